"""The book's small Sphinx extension (``sphinx.local_extensions`` in ``_config.yml``).

- ``bibtex_default_style: authoryear``: a pybtex style whose bibliography labels are the same
  author-year text that ``bibtex_reference_style: author_year`` prints in the chapters
  ("Brown et al., 2020"), sorted by author and year.
- Back-links: every bibliography entry ends with "Cited in:" and a link to the first citation
  in each page that cites it (sphinxcontrib-bibtex links back only within the bibliography's
  own page).
- Every page loads sphinx-thebe's configuration script once (sphinx-thebe 0.3.1 adds it twice,
  so that every page logged "Identifier 'THEBE_JS_URL' has already been declared"), and not at
  all while the thebe launch button is off: the book launches on Colab, and thebe would fetch
  its code from unpkg.com.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from docutils import nodes
from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle
from sphinx.transforms.post_transforms import SphinxPostTransform


def author_year(entry: Any) -> str:
    """"Vaswani et al., 2017", "Jurafsky and Martin, 2025", "Shannon, 1948": as cited."""
    persons = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [" ".join(p.prelast_names + p.last_names) for p in persons]
    names = [n.replace("{", "").replace("}", "") for n in names]
    if not names:
        who = entry.fields.get("organization") or entry.fields.get("institution") or "Anon."
    elif len(names) == 1:
        who = names[0]
    elif len(names) == 2:
        who = f"{names[0]} and {names[1]}"
    else:
        who = f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearLabels(BaseLabelStyle):
    def format_labels(self, sorted_entries: Any) -> Any:
        seen: dict[str, int] = defaultdict(int)
        entries = list(sorted_entries)
        for entry in entries:
            seen[author_year(entry)] += 1
        suffix: dict[str, int] = defaultdict(int)
        for entry in entries:
            label = author_year(entry)
            if seen[label] > 1:  # two works by the same authors in one year: 2020a, 2020b
                label += "abcdefghijklmnopqrstuvwxyz"[suffix[label]]
                suffix[author_year(entry)] += 1
            yield label


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabels
    default_sorting_style = SortingStyle


class CitedIn(SphinxPostTransform):
    """Append "Cited in: <page>, <page>" to every bibliography entry, linking each citation."""

    default_priority = 6  # after sphinxcontrib-bibtex's BibliographyTransform (5)
    formats = ("html",)

    def run(self, **kwargs: Any) -> None:
        domain = self.env.get_domain("cite")
        key_of = {c.citation_id: c.key for c in domain.citations}
        refs: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for ref in domain.citation_refs:
            for target in ref.targets:
                refs[target.key].append((ref.docname, ref.citation_ref_id))
        for citation in self.document.findall(nodes.citation):
            key = key_of.get(citation["ids"][0]) if citation["ids"] else None
            if key is None or not refs.get(key):
                continue
            first: dict[str, str] = {}
            for docname, ref_id in refs[key]:
                first.setdefault(docname, ref_id)
            span = nodes.inline(classes=["cited-in"])
            span += nodes.Text("Cited in: ")
            docs = sorted(first, key=lambda d: (not d.startswith("chapters/"), d))
            for i, docname in enumerate(docs):
                if i:
                    span += nodes.Text(", ")
                uri = self.app.builder.get_relative_uri(self.env.docname, docname)
                span += nodes.reference("", self._title(docname),
                                        refuri=f"{uri}#{first[docname]}", internal=True)
            span += nodes.Text(".")
            # Inside the entry's paragraph, so that it stays in the entry's column.
            paragraphs = list(citation.findall(nodes.paragraph))
            if paragraphs:
                paragraphs[-1] += nodes.Text(" ")
                paragraphs[-1] += span
            else:
                citation += nodes.paragraph("", "", span)

    def _title(self, docname: str) -> str:
        title = self.env.titles[docname].astext() if docname in self.env.titles else docname
        number = self.env.toc_secnumbers.get(docname, {}).get("")
        if number:
            return f"{'.'.join(map(str, number))}. {title}"
        return title


def one_thebe_config(app: Any, pagename: str, templatename: str, context: dict,
                     doctree: Any) -> None:
    launch = (app.config.html_theme_options or {}).get("launch_buttons") or {}
    thebe_on = bool(launch.get("thebe"))
    kept, seen = [], set()
    for js in context.get("script_files", []):
        body = getattr(js, "attributes", {}).get("body", "") or ""
        name = str(js)
        is_thebe = "THEBE_JS_URL" in body or "sphinx-thebe.js" in name
        ident = (name, body)
        if ident in seen or (is_thebe and not thebe_on):
            continue
        seen.add(ident)
        kept.append(js)
    context["script_files"] = kept


def setup(app: Any) -> dict:
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle)
    app.add_post_transform(CitedIn)
    app.connect("html-page-context", one_thebe_config, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
