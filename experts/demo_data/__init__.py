"""The demo's sample domains, written for the project (no lines from any public data set).

One folder per domain, laid out like shared/data: domain.json (name, description, labels) and
train.jsonl, dev.jsonl, test.jsonl with one {"text": ..., "label": ...} object per line, balanced
over the labels. `python manage.py prepare_demo` imports them when MOECOLLAB_DATA_DIR is unset.
"""
