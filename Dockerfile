# One image for web, workers and beat. On a GPU host, pip resolves torch==2.13.0 to the CUDA build.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 \
    DJANGO_SETTINGS_MODULE=moecollab_site.settings.production
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# collectstatic needs some key; the real one comes from the environment at run time.
RUN SECRET_KEY=build-only-key-build-only-key-build-only-key-0123456789 \
    python manage.py collectstatic --noinput
RUN useradd --create-home moecollab && mkdir -p /data/media && chown moecollab /data/media
USER moecollab
EXPOSE 8000
CMD ["gunicorn", "moecollab_site.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]
