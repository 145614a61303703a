"""Brand colours that stay readable: WCAG AA contrast for text, with a darker fallback."""
from __future__ import annotations

from functools import lru_cache
from urllib.parse import quote

AA_TEXT = 4.5


def _luminance(colour: str) -> float:
    channels = [int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast_ratio(first: str, second: str) -> float:
    lighter, darker = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@lru_cache(maxsize=256)
def readable_on_white(colour: str) -> str:
    """The colour itself if white text on it (and it as text on white) meets AA; otherwise
    the same hue darkened step by step until it does."""
    red, green, blue = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    candidate = colour.lower()
    while contrast_ratio(candidate, "#ffffff") < AA_TEXT:
        red, green, blue = (int(c * 0.9) for c in (red, green, blue))
        candidate = f"#{red:02x}{green:02x}{blue:02x}"
    return candidate


@lru_cache(maxsize=256)  # on every branded page: the same few brands over and over
def favicon_svg(*, initial: str, colour: str) -> str:
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="6" '
           f'fill="{colour}"/><text x="16" y="22" font-family="sans-serif" font-size="18" font-weight="700" '
           f'fill="#fff" text-anchor="middle">{initial}</text></svg>')
    return "data:image/svg+xml," + quote(svg)
