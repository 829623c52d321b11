"""minigpt.widgets: precomputed views behind plain HTML controls, with no kernel and no CDN."""

from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from minigpt.widgets import Choice, static_controls, values_of  # noqa: E402


def table(n: int, word: str) -> None:
    print(f"{word} x {n}: {word * n}")


def test_every_combination_is_precomputed() -> None:
    w = static_controls(table, n=[1, 2, 3], word=Choice(["ab", "c"], default="c"))
    assert len(w.views) == 6
    assert w.default == {"n": 1, "word": "c"}
    assert w.views[(2, 0)]["text"] == "ab x 3: ababab\n"
    page = w._repr_html_()
    assert page.count('class="minigpt-widget-frame"') == 6
    # Only the default view is visible before any script runs.
    visible = re.findall(r'data-key="([\d,]+)">', page)
    assert visible == ["0,1"]
    assert 'type="range"' in page and "<select" in page  # numbers: slider; words: select


def test_the_page_needs_nothing_from_outside() -> None:
    w = static_controls(table, n=[1, 2], word=["<b>", "&"])
    page = w._repr_html_()
    assert "http" not in page and "require" not in page
    assert "<b> x" not in page and "&lt;b&gt; x 1" in page  # printed text is escaped
    bundle = w._repr_mimebundle_()
    assert bundle["text/plain"] == repr(w)
    assert repr(w) == "static_controls(table): n in [1, 2]; word in [<b>, &]; 4 precomputed views"


def test_the_same_inputs_give_the_same_page() -> None:
    a = static_controls(table, n=[1, 2], word=["a"])._repr_html_()
    b = static_controls(table, n=[1, 2], word=["a"])._repr_html_()
    assert a == b  # no random ids: a re-run notebook stores the same output


def test_figures_are_captured_and_closed() -> None:
    def draw(slope: float) -> None:
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, slope])
        plt.show()

    before = plt.get_fignums()
    w = static_controls(draw, slope=[0.5, 1.0, 2.0])
    assert plt.get_fignums() == before
    assert all(len(v["images"]) == 1 for v in w.views.values())
    assert w._repr_html_().count("data:image/png;base64,") == 3


def test_returned_values_are_shown() -> None:
    class Rich:
        def _repr_html_(self) -> str:
            return "<table><tr><td>rich</td></tr></table>"

    w = static_controls(lambda kind: Rich() if kind == "rich" else "plain <text>",
                        kind=["rich", "plain"])
    page = w._repr_html_()
    assert "<td>rich</td>" in page and "plain &lt;text&gt;" in page


def test_bad_input_says_what_is_allowed() -> None:
    with pytest.raises(ValueError, match="at least one argument"):
        static_controls(table)
    with pytest.raises(ValueError, match="not one of the values"):
        Choice([1, 2], default=3)
    with pytest.raises(ValueError, match="more than max_views=10"):
        static_controls(table, n=list(range(4)), word=list("abc"), max_views=10)


def test_values_of_ipywidgets() -> None:
    widgets = pytest.importorskip("ipywidgets")
    c = values_of(widgets.IntSlider(value=3, min=1, max=6, description="n"))
    assert c.values == [1, 2, 3, 4, 5, 6] and c.default == 3 and c.label == "n"
    c = values_of(widgets.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.5))
    assert c.values == [0.0, 0.5, 1.0, 1.5, 2.0] and c.default == 1.0
    c = values_of(widgets.Dropdown(options=[("greedy", "g"), ("top-k", "k")], value="k"))
    assert c.values == ["g", "k"] and c.default == "k"
    assert values_of(widgets.Checkbox(value=True)).values == [False, True]
    with pytest.raises(ValueError, match="stops"):
        values_of(widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.01))


def test_the_controls_work_in_a_browser(tmp_path) -> None:  # noqa: ANN001
    """Move the slider and pick an option in Chromium: the matching view, and only it, shows."""
    sync_api = pytest.importorskip("playwright.sync_api")
    from tools.browser_test import find_chromium

    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium on this machine")
    w = static_controls(table, n=[1, 2, 3], word=["ab", "c"])
    page_file = tmp_path / "w.html"
    page_file.write_text(f"<!doctype html><html><body>{w._repr_html_()}</body></html>")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri())

        def shown() -> list[str]:
            return [f.inner_text().strip()
                    for f in page.query_selector_all(".minigpt-widget-frame")
                    if f.is_visible()]

        assert shown() == ["ab x 1: ab"]
        page.fill("input[type=range]", "2")
        assert shown() == ["ab x 3: ababab"]
        assert page.inner_text("output") == "3"
        page.select_option("select", "1")
        assert shown() == ["c x 3: ccc"]
        browser.close()
    assert errors == []
