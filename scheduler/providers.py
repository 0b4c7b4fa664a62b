"""The CI providers riskrank takes events from. A module of its own, outside
`scheduler.models`, so that the CLI can name them in its options without
loading SQLAlchemy and every model (`riskrank --help` reads every signature)."""

from __future__ import annotations

import enum


class Provider(enum.StrEnum):
    GITHUB = "github"
    GITLAB = "gitlab"
    GENERIC = "generic"
