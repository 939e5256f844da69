"""HTML forms of the marketplace: they shape input; the services decide what is allowed."""
from __future__ import annotations

from django import forms
from django.db.models import Q

from experts.models import DataSplit, Domain, ExpertRequest, ExpertVersion, ReviewComment

TEXTAREA = forms.Textarea(attrs={"rows": 3})


class ExpertFilterForm(forms.Form):
    """The search box and filters of the experts list (all optional, read from GET)."""

    q = forms.CharField(required=False, label="Search",
                        widget=forms.TextInput(attrs={"placeholder": "name, description, domain"}))
    domain = forms.ChoiceField(required=False)
    kind = forms.ChoiceField(required=False,
                             choices=[("", "any kind"), ("head", "head"), ("branch", "branch"),
                                      ("lora", "lora")])
    status = forms.ChoiceField(required=False,
                               choices=[("", "any status"), *ExpertVersion.Status.choices])
    contributor = forms.CharField(required=False,
                                  widget=forms.TextInput(attrs={"placeholder": "username"}))

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = Domain.objects.values_list("name", flat=True)
        self.fields["domain"].choices = [("", "any domain"), *((n, n) for n in names)]


DESCRIPTION_HELP = ("Markdown: paragraphs, **bold**, *italics*, lists, `code`, tables and "
                    "links. HTML tags and images are removed when the card is shown.")


class ExpertCreateForm(forms.Form):
    domain = forms.ModelChoiceField(queryset=Domain.objects.all(), to_field_name="name")
    name = forms.CharField(max_length=100)
    description = forms.CharField(required=False, widget=TEXTAREA, help_text=DESCRIPTION_HELP)
    license = forms.CharField(max_length=100, required=False, initial="CC-BY-4.0")
    intended_use = forms.CharField(required=False, widget=TEXTAREA)
    training_data = forms.CharField(required=False, widget=TEXTAREA,
                                    help_text="Where the training data came from.")


class ExpertEditForm(forms.Form):
    description = forms.CharField(required=False, widget=TEXTAREA, help_text=DESCRIPTION_HELP)
    license = forms.CharField(max_length=100, required=False)
    intended_use = forms.CharField(required=False, widget=TEXTAREA)
    training_data = forms.CharField(required=False, widget=TEXTAREA)


class VersionUploadForm(forms.Form):
    """An expert artifact (manifest + weights), or a LoRA folder as peft's save_pretrained
    writes it (adapter_config.json + adapter_model.safetensors) with the label order."""

    manifest = forms.FileField(required=False,
                               widget=forms.ClearableFileInput(attrs={"accept": ".json"}),
                               help_text="manifest.json as written by the engine")
    weights = forms.FileField(
        required=False, widget=forms.ClearableFileInput(attrs={"accept": ".safetensors"}),
        help_text="weights.safetensors")
    adapter_config = forms.FileField(
        required=False, label="LoRA: adapter_config.json",
        widget=forms.ClearableFileInput(attrs={"accept": ".json"}),
        help_text="or a LoRA adapter: the adapter_config.json peft's save_pretrained wrote")
    adapter_model = forms.FileField(
        required=False, label="LoRA: adapter_model.safetensors",
        widget=forms.ClearableFileInput(attrs={"accept": ".safetensors"}),
        help_text="its adapter_model.safetensors (save with safe_serialization=True)")
    labels = forms.CharField(
        required=False, label="LoRA: label order",
        help_text="the domain's labels in the order of the adapter's outputs, comma-separated")
    answers_request = forms.TypedChoiceField(required=False, coerce=int, empty_value=None,
                                             label="Answers request")

    def clean(self):
        data = super().clean()
        artifact = data.get("manifest") or data.get("weights")
        lora = data.get("adapter_config") or data.get("adapter_model") or data.get("labels")
        if not artifact and not lora:
            raise forms.ValidationError("choose manifest.json and weights.safetensors, or a "
                                        "LoRA adapter's two files and its label order")
        if artifact and lora:
            raise forms.ValidationError("upload either an artifact or a LoRA adapter, not both")
        if lora:
            data["labels"] = [x.strip() for x in (data.get("labels") or "").split(",")
                              if x.strip()]
        return data

    def __init__(self, *args, domain: Domain, **kwargs):
        super().__init__(*args, **kwargs)
        # Open requests for this domain, or for no particular domain.
        open_requests = ExpertRequest.objects.filter(
            Q(domain=domain) | Q(domain__isnull=True), status=ExpertRequest.Status.OPEN)
        self.fields["answers_request"].choices = [
            ("", "none"), *((r.pk, f"#{r.pk} {r.title}") for r in open_requests)]


class TrainRequestForm(forms.Form):
    dataset = forms.FileField(
        widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.csv"}),
        help_text="JSONL or CSV with the columns text and label")
    kind = forms.ChoiceField(choices=[("head", "head: an MLP on the shared trunk"),
                                      ("branch", "branch: fine-tuned top layers plus a head"),
                                      ("lora", "lora: a PEFT LoRA adapter plus a head")])
    epochs = forms.IntegerField(required=False, min_value=1, max_value=100,
                                help_text="Leave empty for the platform's default.")


class ReviewForm(forms.Form):
    action = forms.ChoiceField(choices=ReviewComment.Action.choices)
    comment = forms.CharField(required=False, widget=TEXTAREA)


class DomainCreateForm(forms.Form):
    name = forms.SlugField(max_length=64, help_text="lowercase letters, digits, '-' or '_'")
    description = forms.CharField(required=False, widget=TEXTAREA)
    labels = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}),
                             help_text="One label per line (or comma-separated).")

    def clean_labels(self) -> list[str]:
        raw = self.cleaned_data["labels"].replace(",", "\n")
        return [line.strip() for line in raw.splitlines() if line.strip()]


class DomainGuideForm(forms.Form):
    """A domain's playground examples and plain words for its label codes, one per line."""

    examples = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One short text per line; the playground offers them to try. Write your own: "
                  "never paste rows of the private test split.")
    label_help = forms.CharField(
        required=False, label="Label help", widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One line per label, the label, a colon and plain words, e.g. "
                  "'LOC: location: the answer is a place'.")

    def __init__(self, *args, domain: Domain, **kwargs):
        kwargs.setdefault("initial", {
            "examples": "\n".join(domain.examples or []),
            "label_help": "\n".join(f"{k}: {v}" for k, v in (domain.label_help or {}).items()),
        })
        super().__init__(*args, **kwargs)

    def clean_examples(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["examples"].splitlines()
                if line.strip()]

    def clean_label_help(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for n, line in enumerate(self.cleaned_data["label_help"].splitlines(), start=1):
            if not line.strip():
                continue
            label, colon, words = line.partition(":")
            if not colon or not label.strip() or not words.strip():
                raise forms.ValidationError(
                    f"line {n}: write the label, a colon, then plain words, e.g. "
                    "'LOC: location'")
            out[label.strip()] = words.strip()
        return out


class SplitUploadForm(forms.Form):
    kind = forms.ChoiceField(choices=DataSplit.Kind.choices)
    file = forms.FileField(widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.csv"}),
                           help_text="JSONL or CSV with the columns text and label")
    is_private = forms.BooleanField(
        required=False, label="Private",
        help_text="Never shown to contributors. Test splits are private even when unticked.")


class RequestCreateForm(forms.Form):
    title = forms.CharField(max_length=200)
    description = forms.CharField(required=False, widget=TEXTAREA)
    domain = forms.ModelChoiceField(queryset=Domain.objects.all(), to_field_name="name",
                                    required=False, empty_label="no particular domain")
    target_metric = forms.CharField(max_length=200, required=False,
                                    help_text="e.g. accuracy ≥ 0.90 on the private test split")
    dataset = forms.FileField(required=False,
                              widget=forms.ClearableFileInput(attrs={"accept": ".jsonl,.csv"}),
                              help_text="Optional JSONL or CSV with text and label.")
