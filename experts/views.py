from __future__ import annotations

from django.shortcuts import render


def index(request):
    return render(request, "experts/index.html")


def leaderboards(request):
    return render(request, "experts/leaderboards.html")
