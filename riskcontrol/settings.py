"""Settings for the kill switch service.

Everything that differs between machines comes from the environment (or a
`.env` file beside manage.py, as in the seed); policy comes from
`config/risk_limits.yaml`, validated when the app starts (killswitch.policy).
"""

from __future__ import annotations

import os
import secrets
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from dotenv import load_dotenv

from . import redis_config
from .env import envbool, envint, envlist, envstr, metrics_networks, redis_url_from_env

BASE_DIR = Path(__file__).resolve().parent.parent
# The seed loads a .env file; the real environment still wins over it.
load_dotenv(BASE_DIR / ".env", override=False)

TESTING = "pytest" in sys.modules or envbool("KILLSWITCH_TESTING", False)

DEBUG = envbool("DEBUG", False)
SECRET_KEY = envstr("SECRET_KEY")
if not SECRET_KEY:
    # No key configured: generate one on first start and keep it in var/ (mode 0600),
    # so a fresh clone runs with a random key that survives restarts. Production sets
    # SECRET_KEY or SECRET_KEY_FILE.
    _key_file = BASE_DIR / "var" / "secret_key"
    try:
        _key_file.parent.mkdir(exist_ok=True)
        if not _key_file.exists():
            _key_file.touch(mode=0o600)
            _key_file.write_text(secrets.token_urlsafe(50))
        SECRET_KEY = _key_file.read_text().strip()
    except OSError as exc:
        raise ImproperlyConfigured(f"SECRET_KEY is not set and {_key_file} cannot be written: {exc}") from exc

PORT = envint("PORT", 8000)
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = envlist(
    "CSRF_TRUSTED_ORIGINS", [f"http://localhost:{PORT}", f"http://127.0.0.1:{PORT}"]
)

# --- HTTPS in production (README: Production) -----------------------------------------
# SECURE_HTTPS=true: the service is reached over TLS (directly or behind NUM_PROXIES
# reverse proxies that terminate it): HSTS, the redirect to https, cookies sent only
# over TLS, and the proxies' X-Forwarded-Proto trusted to tell which scheme was used.
SECURE_HTTPS = envbool("SECURE_HTTPS", False)
if SECURE_HTTPS:
    SECURE_SSL_REDIRECT = True
    SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    # The health and metrics endpoints answer on plain HTTP too (load balancers, scrapers).
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
    if envint("NUM_PROXIES", 0) > 0:
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# A request body above this answers 413 (the API's error shape); an activation is ~200 bytes.
DATA_UPLOAD_MAX_MEMORY_SIZE = envint("DATA_UPLOAD_MAX_MEMORY_SIZE", 1_048_576)

INSTALLED_APPS = [
    "daphne",
    "killswitch.apps.RiskAdminConfig",  # django.contrib.admin with the Risk page
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "channels",
    "axes",
    "killswitch",
    "brokers",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # answers a locked-out login attempt
]

ROOT_URLCONF = "riskcontrol.urls"
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
            ],
        },
    },
]
WSGI_APPLICATION = None
ASGI_APPLICATION = "riskcontrol.asgi.application"

# --- Database: the source of truth -----------------------------------------------------
DATABASE_URL = envstr("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}"
try:
    # Connections are kept between requests (and checked before reuse): opening one per
    # request costs the status read a third of its time on SQLite and more on PostgreSQL.
    # Each HTTP worker thread keeps one (riskcontrol/performance/handler.py). Not inside pytest's own
    # process: helper threads there (Channels, asgiref) would keep sessions open and
    # PostgreSQL refuses to drop a test database in use; the servers the tests start
    # (tests/stack.py) keep them as in production.
    _db = dj_database_url.parse(
        DATABASE_URL, conn_max_age=0 if "pytest" in sys.modules else envint("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True)
except Exception as exc:  # dj_database_url raises several types for a bad URL
    raise ImproperlyConfigured(f"DATABASE_URL={DATABASE_URL!r} cannot be parsed: {exc}") from exc
if _db["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE transactions take the write lock up front: no lock-upgrade deadlocks
    # when two transitions race; the timeout makes the loser wait instead of failing.
    # WAL: readers never block the writer nor the writer them (daphne, the Celery worker,
    # the reconciler and the sweep share the file), and a commit is one fsync of the log
    # (measured: an activation 12 -> 8.5 ms). synchronous stays FULL: a committed audit
    # event survives a power cut.
    _db["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 30,
                      "init_command": "PRAGMA journal_mode=WAL;"}
    # Channels live-server and threaded tests need a file-backed test database;
    # the pid keeps parallel test runs on one machine apart.
    _db["TEST"] = {"NAME": str(BASE_DIR / "var" / f"test-{os.getpid()}.sqlite3")}
elif _db["ENGINE"] not in ("django.db.backends.postgresql",):
    raise ImproperlyConfigured(
        f"DATABASE_URL={DATABASE_URL!r} names an unsupported database; expected sqlite:// or postgres://"
    )
DATABASES = {"default": _db}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: the distribution layer -----------------------------------------------------
# How every component connects (sentinels or a URL, which user, which database) is one
# rule: riskcontrol/redis_config.py. These settings hold its inputs; the service's own
# client (killswitch.distribution.connection) reads them, Celery, Channels and the cache
# get their configuration from the same target below.
REDIS_URL = redis_url_from_env()
REDIS_SENTINELS = redis_config.parse_sentinels(envstr("REDIS_SENTINELS"))
REDIS_SENTINEL_MASTER = envstr("REDIS_SENTINEL_MASTER") or None
REDIS_SERVICE_PASSWORD = envstr("REDIS_SERVICE_PASSWORD") or None
REDIS_SENTINEL_PASSWORD = envstr("REDIS_SENTINEL_PASSWORD") or None
_redis = redis_config.resolve(url=REDIS_URL, sentinels=REDIS_SENTINELS, master=REDIS_SENTINEL_MASTER,
                              service_password=REDIS_SERVICE_PASSWORD,
                              sentinel_password=REDIS_SENTINEL_PASSWORD)

_broker_url, _broker_options = _redis.celery_broker()
CELERY_BROKER_URL = envstr("CELERY_BROKER_URL") or _broker_url
# No result backend: every task records its outcome on its own row (runs, deliveries).
# Control replies (the workers' answers to a ping, /readyz) travel on the broker.
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 60),
                                   **(_broker_options if not envstr("CELERY_BROKER_URL") else {})}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Two queues, each with its own workers: broker work (runs, sweep work) must never wait
# behind a slow notification channel (apprise waits up to 10 s per try).
BROKER_QUEUE = "broker"
NOTIFY_QUEUE = "notify"
CELERY_TASK_ROUTES = {
    "brokers.*": {"queue": BROKER_QUEUE},
    "killswitch.notifications.*": {"queue": NOTIFY_QUEUE},
}
# A task nobody routed goes where a worker always listens.
CELERY_TASK_DEFAULT_QUEUE = BROKER_QUEUE

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        "CONFIG": {"hosts": [_redis.channel_layer_host()]},
    }
}

# The shared cache: failed-attempt counts (killswitch.api.limits), the login throttle and
# anything else counted across server processes; in tests too (the embedded Redis).
CACHES = {"default": _redis.cache()}

# --- Audit chain ---------------------------------------------------------------------------
# With a key (or AUDIT_HMAC_KEY_FILE), event hashes are HMAC-SHA256 under it (chain version
# 2): someone with only the database cannot rebuild the chain. Keep the key off the
# database host; losing it makes keyed events unverifiable (they stay in place).
AUDIT_HMAC_KEY = envstr("AUDIT_HMAC_KEY") or None

# --- Policy ------------------------------------------------------------------------------
RISK_LIMITS_PATH = Path(envstr("RISK_LIMITS_PATH") or BASE_DIR / "config" / "risk_limits.yaml")
# PAPER_ONLY refuses any broker other than the paper broker.
PAPER_ONLY = envbool("PAPER_ONLY", True)

# --- Auth, API -------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "admin:login"
# Failed admin logins (django-axes) are counted per username and, separately, per client
# address (the same address the API and the audit log use: NUM_PROXIES), in the shared
# cache, so every web process counts the same; a lockout is an audit event
# (killswitch.web.logins). API tokens are not passwords: the API has its own limiter.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_HANDLER = "axes.handlers.cache.AxesCacheHandler"
AXES_CACHE = "default"
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "killswitch.web.logins.client_ip"
AXES_LOCKOUT_CALLABLE = "killswitch.web.logins.locked_out"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Token (hashed at rest) for scripts and desks; session + CSRF for the dashboard.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "killswitch.api.authentication.HashedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["killswitch.api.parsers.ShallowJSONParser"],
    # One error shape for every error: {"error": "...", "code": "...", ...}.
    "EXCEPTION_HANDLER": "killswitch.api.errors.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Kill switch API",
    "DESCRIPTION": "Stop automated trading at once, in tiers, with an audit trail.",
    "VERSION": "1.0.0",
    "ENUM_NAME_OVERRIDES": {
        "LevelEnum": "killswitch.domain.LEVELS",
        "ActiveLevelEnum": "killswitch.domain.ACTIVE_LEVELS",
    },
}
# Failed and unauthenticated attempts are counted per client address (killswitch.api.limits)
# in the default cache, shared by every server process (CACHES above). A permitted
# activation is never counted nor throttled.
KILLSWITCH_FAILED_ATTEMPTS_LIMIT = envint("KILLSWITCH_FAILED_ATTEMPTS_LIMIT", 20)
KILLSWITCH_FAILED_ATTEMPTS_WINDOW = envint("KILLSWITCH_FAILED_ATTEMPTS_WINDOW", 60)
# Reads inside one server process at once (riskcontrol.performance.admission). Measured with
# bench/bench_api.py: 2 serves the most reads and the fastest activations on PostgreSQL
# (1 leaves the process idle during each database round trip; 4 only adds contention
# for the one interpreter lock); on SQLite 1 and 2 are close.
KILLSWITCH_MAX_CONCURRENT_READS = envint("KILLSWITCH_MAX_CONCURRENT_READS", 2)
# Reads (never writes) may reuse a token's authentication and roles for this many seconds
# per server process (riskcontrol.performance.caches); 0 looks every read up in the database.
KILLSWITCH_READ_AUTH_CACHE_SECONDS = envint("KILLSWITCH_READ_AUTH_CACHE_SECONDS", 2)
# Worker threads serving HTTP requests in each server process (riskcontrol/performance/handler.py).
KILLSWITCH_HTTP_THREADS = envint("KILLSWITCH_HTTP_THREADS", 8)
# How long a read waits for a read slot before it enters beyond the limit (riskcontrol/performance/admission.py).
KILLSWITCH_READ_QUEUE_MAX_MS = envint("KILLSWITCH_READ_QUEUE_MAX_MS", 1000)
# How long a read waits for writes in progress before it enters anyway (riskcontrol/performance/admission.py).
KILLSWITCH_WRITE_PRIORITY_MS = envint("KILLSWITCH_WRITE_PRIORITY_MS", 250)
# How long an activation (or any audited write) waits for a database lock before it takes
# the Redis path (services.audit.bounded_transaction): SQLite busy timeout, PostgreSQL lock_timeout.
KILLSWITCH_DB_LOCK_TIMEOUT_MS = envint("KILLSWITCH_DB_LOCK_TIMEOUT_MS", 2000)
# Proxies in front of the service whose X-Forwarded-For may be trusted for client addresses.
NUM_PROXIES = envint("NUM_PROXIES", 0)

# --- Operations: /healthz, /readyz, /metrics (killswitch.ops) ----------------------------
# /metrics answers the addresses or networks in METRICS_ALLOWED_IPS (default loopback),
# or any address presenting METRICS_TOKEN as a bearer token.
METRICS_ALLOWED_NETWORKS = metrics_networks(envlist("METRICS_ALLOWED_IPS", ["127.0.0.1", "::1"]))
METRICS_TOKEN = envstr("METRICS_TOKEN") or None
if TESTING:
    # Personas are created per test; the real hasher costs ~0.3 s each.
    PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# --- Locale, static --------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"

# --- Logging: structured lines (seed checklist: timestamps, original and new state) ------
# One JSON object per line, always to var/log/killswitch.log (LOG_FILE; empty: none). On
# stderr only with LOG_FORMAT=json (the services under `make run`, the Procfile and the
# systemd units set it) or a command's --verbose: the CLI's own output is for people.
LOG_FORMAT = envstr("LOG_FORMAT", "text")
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT={LOG_FORMAT!r} is invalid; expected text or json")
LOG_FILE = envstr("LOG_FILE", str(BASE_DIR / "var" / "log" / "killswitch.log"))
_log_handlers: dict[str, dict] = {}
if LOG_FORMAT == "json" or TESTING:
    _log_handlers["console"] = {"class": "logging.StreamHandler", "formatter": "structured"}
if LOG_FILE and not TESTING:
    try:
        Path(LOG_FILE).parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImproperlyConfigured(f"LOG_FILE={LOG_FILE!r}: its folder cannot be created: {exc}") from exc
    _log_handlers["file"] = {"class": "logging.handlers.WatchedFileHandler", "filename": LOG_FILE,
                             "formatter": "structured"}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "structured": {"()": "killswitch.runtime.logging.StructuredFormatter"},
    },
    "handlers": _log_handlers,
    "loggers": {
        name: {"handlers": list(_log_handlers), "level": envstr("LOG_LEVEL", "INFO"), "propagate": False}
        for name in ("killswitch", "brokers", "riskcontrol")
    },
}
