"""The demo's sample domains: synthetic sentences filled in from the templates of generate.py.

No line comes from any public data set, and none is real text: the demo's scores say that the
platform works, not how well an expert would do on real news, reviews, questions or messages.
One folder per domain: domain.json (name, description, labels) and train.jsonl (96 rows),
dev.jsonl and test.jsonl (120 rows each) with one {"text": ..., "label": ...} object per line,
balanced over the labels. `python manage.py prepare_demo` imports them when MOECOLLAB_DATA_DIR
is unset; `python -m experts.demo_data.generate` writes them again.
"""
