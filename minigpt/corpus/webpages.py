"""A miniature web crawl, made by code: the plays plus pages that look like the web's worst.

Common Crawl is mostly not prose. GPT-3's filters (Brown et al. 2020, Appendix A) were built
to remove what a crawl is full of: navigation menus and legal notices, pages stuffed with
search keywords, text garbled by broken encodings or machine spinning, and the same article
copied with small edits across many sites. :func:`make_crawl` builds a crawl of such pages
from Shakespeare's plays (``minigpt.data``) and a seeded random generator, so that nothing is
downloaded and every run makes the same pages:

- ``"play"``: a clean excerpt of a play (the kind of text the filters should keep);
- ``"wrapped"``: a play excerpt between a site's menu and its footer;
- ``"near_copy"``: a copy of another page of the crawl with a few words edited
  (:func:`near_copy`); its :attr:`Page.original` says which page it copies;
- ``"boilerplate"``: menus, cookie banners, copyright lines (:func:`boilerplate_page`);
- ``"spam"``: keyword stuffing (:func:`spam_page`);
- ``"garbled"``: play words in random order with broken encodings (:func:`garbled_page`).

The plays are split in two halves by :func:`split_plays`: the crawl's excerpts come from one
half, and :func:`reference_excerpts` draws the "high-quality" reference side of the quality
classifier from the other, as GPT-3 used WebText, Wikipedia and books.

    >>> crawl = make_crawl(60, seed=0)
    >>> len(crawl), sorted({page.kind for page in crawl}) == sorted(PAGE_KINDS)
    (60, True)
    >>> copy = next(p for p in crawl if p.kind == "near_copy")
    >>> crawl[copy.original].kind in ("play", "wrapped")
    True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from minigpt.checks import check_int
from minigpt.data import load_play, play_names

__all__ = [
    "PAGE_KINDS",
    "DEFAULT_MIX",
    "Page",
    "split_plays",
    "play_excerpt",
    "reference_excerpts",
    "near_copy",
    "boilerplate_page",
    "spam_page",
    "garbled_page",
    "make_crawl",
]

PAGE_KINDS = ("play", "wrapped", "near_copy", "boilerplate", "spam", "garbled")
DEFAULT_MIX = {"play": 0.3, "wrapped": 0.1, "near_copy": 0.1, "boilerplate": 0.2, "spam": 0.15,
               "garbled": 0.15}

_NAV = ["Home", "About us", "Contact", "Blog", "Shop", "FAQ", "Login", "Sign up", "Careers",
        "Press", "Sitemap", "Help", "Store locator", "Gift cards", "Newsletter", "Forum", "Events",
        "Downloads", "Support", "My account", "Cart (0)", "Wishlist", "Deals", "Categories"]
_LEGAL = [
    "Privacy Policy", "Terms of Service", "Cookie Policy", "All rights reserved.",
    "Powered by WordPress", "This site uses cookies to improve your experience.",
    "By continuing to browse the site you agree to our use of cookies.", "Accept all cookies",
    "Subscribe to our newsletter and get 10% off your first order!", "Follow us on Facebook",
    "Follow us on Twitter", "Share this:", "Posted in Uncategorized", "Leave a comment",
    "Previous post", "Next post", "Skip to content", "Search for:", "Recent Posts", "Archives",
    "Meta", "Log in", "Entries feed", "Comments feed", "Related articles", "Read more",
    "Click here to learn more", "Sponsored content", "Advertisement", "Back to top",
    "Enter your email address", "Your cart is empty", "Free shipping on orders over $50",
    "Customer reviews", "JavaScript must be enabled to view this page.", "Loading...",
]
_COMPANIES = ["Acme Media", "BestDeals Online", "WebHost Pro", "Northwind Traders", "Globex",
              "Initech", "Umbrella Digital", "Stark Retail", "Wayne Publishing", "Hooli"]
_SPAM_WORDS = ["cheap", "best", "free", "buy", "online", "discount", "deals", "top", "sale",
               "review", "2019", "now", "download", "official", "price", "fast", "guaranteed"]
_SPAM_THINGS = ["flights", "hotels", "loans", "casino", "pills", "insurance", "watches",
                "shoes", "ringtones", "movies", "followers", "diet", "crypto", "essays"]
_SPAM_PLACES = ["london", "paris", "new york", "tokyo", "berlin", "sydney", "dubai", "rome"]
_MOJIBAKE = ["Ã©", "â€™", "Ã¨", "â€œ", "â€\x9d", "Ã¢", "\ufffd", "Ã¶", "Â", "&amp;", "&#39;"]


@dataclass(frozen=True)
class Page:
    """One page of the crawl: its ``kind`` (one of :data:`PAGE_KINDS`), its ``text``, and for a
    near-copy the index in the crawl of the page it copies (``original``; -1 otherwise)."""

    kind: str
    text: str
    original: int = -1


def _rng(seed: int | np.random.Generator) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def split_plays() -> tuple[list[str], list[str]]:
    """The plays in two halves, alternating in sorted order: ``(reference, crawl)``.

    The reference half plays the part of GPT-3's curated corpora; the crawl half supplies the
    crawl's play excerpts, so the classifier is judged on plays it did not train on.
    """
    names = play_names()
    return names[0::2], names[1::2]


@functools.lru_cache(maxsize=64)
def _play_lines(name: str) -> tuple[str, ...]:
    return tuple(line for line in load_play(name).splitlines() if line.strip())


def play_excerpt(name: str, rng: np.random.Generator, words: tuple[int, int] = (120, 240)) -> str:
    """Consecutive non-empty lines of the play ``name``, from a random line, until the excerpt
    has between ``words[0]`` and ``words[1]`` words (the target is drawn uniformly)."""
    low, high = words
    if not 1 <= low <= high:
        raise ValueError(f"words must be (low, high) with 1 <= low <= high, got {words!r}")
    lines = _play_lines(name)
    target = int(rng.integers(low, high + 1))
    start = int(rng.integers(0, max(1, len(lines) - 400)))
    out: list[str] = []
    count = 0
    for line in lines[start:]:
        out.append(line)
        count += len(line.split())
        if count >= target:
            break
    return "\n".join(out)


def reference_excerpts(n: int, seed: int = 0, words: tuple[int, int] = (120, 240)) -> list[str]:
    """``n`` excerpts of the reference plays: the "high-quality" side of the classifier.

    >>> len(reference_excerpts(3, seed=1))
    3
    """
    rng = _rng(seed)
    reference, _ = split_plays()
    return [play_excerpt(reference[int(rng.integers(len(reference)))], rng, words)
            for _ in range(n)]


def near_copy(text: str, rng: np.random.Generator, edit_rate: float = 0.03) -> str:
    """A copy of ``text`` in which each word is edited with probability ``edit_rate``:
    deleted, swapped with the next word, or misspelt (two letters swapped), as sites that copy
    an article tend to do. Line breaks become spaces.

    >>> near_copy("to be or not to be", np.random.default_rng(0), edit_rate=0.0)
    'to be or not to be'
    """
    if not 0.0 <= edit_rate <= 1.0:
        raise ValueError(f"edit_rate must be in [0, 1], got {edit_rate!r}")
    words = text.split()
    out: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if rng.random() >= edit_rate:
            out.append(word)
        else:
            action = int(rng.integers(3))
            if action == 1 and i + 1 < len(words):  # swap with the next word
                out += [words[i + 1], word]
                i += 1
            elif action == 2 and len(word) > 2:  # a typo: two neighbouring letters swapped
                k = int(rng.integers(len(word) - 1))
                out.append(word[:k] + word[k + 1] + word[k] + word[k + 2:])
            # action 0 (or an edit that does not apply): the word is deleted
        i += 1
    return " ".join(out)


def _menu(rng: np.random.Generator, n: int) -> str:
    return " | ".join(rng.choice(_NAV, size=n, replace=False).tolist())


def _footer(rng: np.random.Generator) -> str:
    year = int(rng.integers(2008, 2020))
    company = str(rng.choice(_COMPANIES))
    notices = rng.choice(_LEGAL, size=int(rng.integers(3, 7)), replace=False).tolist()
    return f"{' '.join(notices)} © {year} {company}. All rights reserved."


def boilerplate_page(rng: np.random.Generator, words: tuple[int, int] = (80, 200)) -> str:
    """Menus, notices and footers, the text a crawler keeps when a page has no content."""
    target = int(rng.integers(words[0], words[1] + 1))
    parts = [_menu(rng, int(rng.integers(4, 10)))]
    while sum(len(p.split()) for p in parts) < target:
        if rng.random() < 0.3:
            parts.append(_menu(rng, int(rng.integers(3, 8))))
        else:
            parts.append(" ".join(rng.choice(_LEGAL, size=int(rng.integers(2, 6)),
                                             replace=False).tolist()))
    parts.append(_footer(rng))
    return "\n".join(parts)


def spam_page(rng: np.random.Generator, words: tuple[int, int] = (80, 200)) -> str:
    """Keyword stuffing: a few product words repeated in every order, with place names."""
    target = int(rng.integers(words[0], words[1] + 1))
    things = rng.choice(_SPAM_THINGS, size=2, replace=False).tolist()
    out: list[str] = []
    while len(out) < target:
        phrase = [str(rng.choice(_SPAM_WORDS)), str(rng.choice(things))]
        if rng.random() < 0.4:
            phrase += ["in", str(rng.choice(_SPAM_PLACES))]
        if rng.random() < 0.2:
            phrase += ["click", "here"]
        out += phrase
    return " ".join(out)


def garbled_page(rng: np.random.Generator, source: str, corruption: float = 0.3) -> str:
    """Machine-garbled text: the words of ``source`` in random order, and a ``corruption``
    share of them broken by mojibake (``"Ã©"``, ``"â€™"``) or random letters."""
    words = source.split()
    rng.shuffle(words)
    out = []
    for word in words:
        if rng.random() < corruption:
            k = int(rng.integers(len(word) + 1))
            junk = (str(rng.choice(_MOJIBAKE)) if rng.random() < 0.6 else
                    "".join(rng.choice(list("bcdfghjklmnpqrstvwxz"), size=3).tolist()))
            word = word[:k] + junk + word[k:]
        out.append(word)
    return " ".join(out)


def _check_mix(mix: dict[str, float]) -> np.ndarray:
    unknown = set(mix) - set(PAGE_KINDS)
    if unknown:
        raise ValueError(f"unknown page kinds {sorted(unknown)}; allowed: {', '.join(PAGE_KINDS)}")
    shares = np.array([float(mix.get(kind, 0.0)) for kind in PAGE_KINDS])
    if (shares < 0).any() or not np.isclose(shares.sum(), 1.0):
        raise ValueError(f"mix shares must be >= 0 and sum to 1, got {mix}")
    if shares[PAGE_KINDS.index("near_copy")] > 0 and shares[:2].sum() == 0:
        raise ValueError("near-copies need originals: give 'play' or 'wrapped' a share")
    return shares


def make_crawl(n_pages: int = 1000, seed: int = 0, mix: dict[str, float] | None = None,
               edit_rates: Sequence[float] = (0.01, 0.1)) -> list[Page]:
    """A shuffled crawl of ``n_pages`` pages, ``mix`` giving each kind's share
    (default :data:`DEFAULT_MIX`). Near-copies copy a random ``"play"`` or ``"wrapped"`` page
    of the same crawl, with an edit rate drawn uniformly from ``edit_rates``; the same seed
    makes the same crawl.
    """
    check_int("n_pages", n_pages)
    shares = _check_mix(DEFAULT_MIX if mix is None else mix)
    rng = _rng(seed)
    counts = np.floor(shares * n_pages).astype(int)
    counts[int(np.argmax(shares))] += n_pages - counts.sum()
    count = dict(zip(PAGE_KINDS, counts.tolist(), strict=True))
    _, crawl_plays = split_plays()

    def excerpt() -> str:
        return play_excerpt(crawl_plays[int(rng.integers(len(crawl_plays)))], rng)

    pages = [Page("play", excerpt()) for _ in range(count["play"])]
    for _ in range(count["wrapped"]):
        text = f"{_menu(rng, int(rng.integers(4, 9)))}\n{excerpt()}\n{_footer(rng)}"
        pages.append(Page("wrapped", text))
    pages += [Page("boilerplate", boilerplate_page(rng)) for _ in range(count["boilerplate"])]
    pages += [Page("spam", spam_page(rng)) for _ in range(count["spam"])]
    pages += [Page("garbled", garbled_page(rng, excerpt())) for _ in range(count["garbled"])]
    n_originals = count["play"] + count["wrapped"]
    copies = []
    for _ in range(count["near_copy"]):
        source = int(rng.integers(n_originals))
        rate = float(rng.uniform(*edit_rates))
        copies.append(Page("near_copy", near_copy(pages[source].text, rng, rate), source))
    pages += copies
    order = rng.permutation(len(pages))
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    return [Page(p.kind, p.text, int(position[p.original]) if p.original >= 0 else -1)
            for p in (pages[i] for i in order)]
