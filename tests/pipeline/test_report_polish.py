"""Reports read well: numbers right-aligned and text left, a distinct style per ROC curve."""

from unlearn_pipeline.html_report import table_html
from unlearn_pipeline.stages.evaluate import curve_styles


def test_claims_are_left_aligned_and_numbers_right_aligned():
    page = table_html(["finding", "value"], [["AMUN beats every baseline on Avg Gap", "1.25 ± 0.40"],
                                             ["F2", "-"], ["F3", "12.5%"]])
    assert "<td>AMUN beats every baseline on Avg Gap</td>" in page and "<td>F2</td>" in page
    assert "<td class='n'>1.25 ± 0.40</td>" in page and "<td class='n'>-</td>" in page
    assert "<td class='n'>12.5%</td>" in page


def test_twelve_roc_curves_get_twelve_distinct_styles():
    styles = curve_styles(12)
    assert len({(tuple(colour), style) for colour, style in styles}) == 12
