"""Settings shared by every environment; values come from the environment (12-factor)."""
from __future__ import annotations

from pathlib import Path

from moecollab_site.settings.env import (
    BASE_DIR,
    env,
    env_bool,
    env_broker,
    env_choice,
    env_database,
    env_int,
    env_rate,
)

VAR_DIR = Path(env.str("MOECOLLAB_VAR_DIR", default=str(BASE_DIR / "var")))

DEBUG = False
# Each environment decides whether a default key is allowed.
SECRET_KEY = env.str("SECRET_KEY", default="")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "moecollab_site",
    "experts",
    "gating",
    "training",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "moecollab_site.middleware.DatabaseUnavailableMiddleware",
    "moecollab_site.middleware.RejectNulMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "moecollab_site.urls"
WSGI_APPLICATION = "moecollab_site.wsgi.application"
ASGI_APPLICATION = "moecollab_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "moecollab_site.context_processors.roles",
                "experts.context_processors.notifications",
            ],
        },
    },
]

DATABASES = {"default": env_database(f"sqlite:///{VAR_DIR / 'moecollab.sqlite3'}")}
DATABASES["default"]["CONN_MAX_AGE"] = env_int("DATABASE_CONN_MAX_AGE", 0)
# A kept-alive connection that died while idle (database restarted) is replaced before use.
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The web process and the worker share the file: wait for locks instead of failing. WAL
    # lets readers work while one connection writes; IMMEDIATE takes the write lock when a
    # transaction begins, where the busy timeout waits for it (a deferred one that reads,
    # then writes, fails at once with "database is locked" if another writer came between).
    DATABASES["default"].setdefault("OPTIONS", {}).update({
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL;",
    })
else:
    DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = 3

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))

# Where the platform finds domain folders laid out like experts/demo_data (domain.json, *.jsonl).
MOECOLLAB_DATA_DIR = env.str("MOECOLLAB_DATA_DIR", default="") or None
# Trunk features cached on disk, shared by jobs on one machine.
MOECOLLAB_FEATURE_CACHE_DIR = Path(
    env.str("MOECOLLAB_FEATURE_CACHE_DIR", default=str(VAR_DIR / "feature-cache"))
)
MOECOLLAB_UPLOAD_MAX_BYTES = env_int("MOECOLLAB_UPLOAD_MAX_MB", 200, minimum=1) * 1024 * 1024
# Seconds after which a worker that has not written a heartbeat counts as gone.
MOECOLLAB_WORKER_STALE_S = env_int("MOECOLLAB_WORKER_STALE_S", 60, minimum=2)
# A queued job not picked up this long after dispatch is sent again (its message may be lost).
MOECOLLAB_REQUEUE_AFTER_S = env_int("MOECOLLAB_REQUEUE_AFTER_S", 300, minimum=10)

# A shared cache (Redis in production) so throttles count across gunicorn workers.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://moecollab")}

# Requests per client per period; log-in and token creation are what password guessers hit.
# Predict also counts work: texts and characters per client (a call of 64 long texts costs
# ~100x a call of one short one), shared by the API and the playground.
THROTTLE_RATES = {
    "auth": env_rate("MOECOLLAB_THROTTLE_AUTH", "20/min"),
    "predict": env_rate("MOECOLLAB_THROTTLE_PREDICT", "600/min"),
    "predict_texts": env_rate("MOECOLLAB_THROTTLE_PREDICT_TEXTS", "1200/min"),
    "predict_chars": env_rate("MOECOLLAB_THROTTLE_PREDICT_CHARS", "300000/min"),
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticatedOrReadOnly"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "EXCEPTION_HANDLER": "moecollab_site.api.exception_handler",
    # Every JSON body is read by moecollab_site.negotiation.JSONParser, whatever parser a view
    # names.
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "moecollab_site.negotiation.ContentNegotiation",
    "DEFAULT_THROTTLE_RATES": THROTTLE_RATES,
    # A client is its socket address; only behind this many reverse proxies of our own is it
    # read from X-Forwarded-For (the last hops). Without a proxy anyone can forge the header.
    # Every throttle of the site reads it (moecollab_site.throttling.client_address).
    "NUM_PROXIES": env_int("MOECOLLAB_TRUSTED_PROXIES", 0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "MoECollab API",
    # Markdown in Swagger UI: the docs page links back to the site it documents.
    "DESCRIPTION": "Contributor marketplace and training platform for mixture-of-experts "
                   "models. [Back to the MoECollab site](/). An unknown query parameter or "
                   "body field is refused with 400, never ignored.",
    "EXTERNAL_DOCS": {"description": "The MoECollab site", "url": "/"},
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "moecollab_site.api.document_bad_query_strings",
        "moecollab_site.api.document_unknown_body_fields",
    ],
    # Several choice fields are called "kind": give each set its own schema name.
    "ENUM_NAME_OVERRIDES": {
        "SplitKindEnum": "experts.models.DataSplit.Kind",
        "ExpertKindEnum": "experts.models.EXPERT_KIND_CHOICES",
        "JobCreateKindEnum": "training.serializers.JOB_CREATE_KINDS",
        "JobKindEnum": "training.models.Job.Kind",
    },
}

# Celery. The default broker is kombu's filesystem transport: no server to run, yet the worker
# is a real separate process that the web process hands work to.
BROKER_DIR = Path(env.str("MOECOLLAB_BROKER_DIR", default=str(VAR_DIR / "broker")))
CELERY_BROKER_URL = env_broker("filesystem://")


def filesystem_broker_options(broker_dir: Path) -> dict:
    """Transport options of the embedded broker; creates its folders."""
    for sub in ("queue", "control"):
        (broker_dir / sub).mkdir(parents=True, exist_ok=True)
    return {
        "data_folder_in": str(broker_dir / "queue"),
        "data_folder_out": str(broker_dir / "queue"),
        "control_folder": str(broker_dir / "control"),
        "store_processed": False,
    }


if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = filesystem_broker_options(BROKER_DIR)
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 6 * 3600}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_SERIALIZER = "json"
CELERY_TASK_IGNORE_RESULT = True  # job state lives in the Job table
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "cpu"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}
# How often beat sweeps for jobs whose worker died (a starting worker also sweeps once).
MOECOLLAB_SWEEP_EVERY_S = env_int("MOECOLLAB_SWEEP_EVERY_S", 60, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "sweep-stale-jobs": {
        "task": "training.sweep_stale_jobs",
        "schedule": float(MOECOLLAB_SWEEP_EVERY_S),
        "options": {"queue": "cpu"},
    },
}
# Serving /api/v1/predict/ from the web process.
MOECOLLAB_PREDICT_MAX_TEXTS = env_int("MOECOLLAB_PREDICT_MAX_TEXTS", 64, minimum=1)
MOECOLLAB_PREDICT_MAX_CHARS = env_int("MOECOLLAB_PREDICT_MAX_CHARS", 2000, minimum=1)
# Texts per forward pass. A request gives up the model between chunks, so another client's
# call waits for about one chunk (2 long texts: ~20 ms in bfloat16, ~50 ms in float32 on one
# core) instead of a whole batch; from 2 texts up, larger batches buy no throughput on CPU.
MOECOLLAB_PREDICT_CHUNK = env_int("MOECOLLAB_PREDICT_CHUNK", 2, minimum=1)
# One thread per web process: with several processes on a few cores, more threads only contend.
MOECOLLAB_PREDICT_THREADS = env_int("MOECOLLAB_PREDICT_THREADS", 1, minimum=1)
# Shapley credit of a gating model's experts: exact (2^n coalitions on cached outputs) up to
# this many experts, else this many random permutations with a 95 % interval.
MOECOLLAB_SHAPLEY_EXACT_MAX = env_int("MOECOLLAB_SHAPLEY_EXACT_MAX", 10, minimum=1)
MOECOLLAB_SHAPLEY_PERMUTATIONS = env_int("MOECOLLAB_SHAPLEY_PERMUTATIONS", 200, minimum=10)
MOECOLLAB_PREDICT_DEVICE = env.str("MOECOLLAB_PREDICT_DEVICE", default="cpu")
# Backbone forward for serving: "auto" (the fastest backend that passed the accuracy gate in
# the production version's evaluation, else torch-float32), torch-float32, torch-bfloat16,
# onnx-float32 or onnx-int8. ONNX exports are cached under MOECOLLAB_FEATURE_CACHE_DIR/onnx.
MOECOLLAB_PREDICT_BACKEND = env.str("MOECOLLAB_PREDICT_BACKEND", default="auto")
# Backbone forward that encodes features for training, validation and evaluation: "auto" (ONNX
# Runtime float32 on CPU when installed, else torch), torch-float32 or onnx-float32. Only float32
# backends: the features are the ones experts learn from. Part of the feature cache's key.
MOECOLLAB_ENCODE_BACKEND = env_choice("MOECOLLAB_ENCODE_BACKEND", "auto",
                                      ("auto", "torch-float32", "onnx-float32"))
# Where workers run models: "auto" (CUDA when present), "cpu" or "cuda[:n]".
MOECOLLAB_DEVICE = env.str("MOECOLLAB_DEVICE", default="auto")
