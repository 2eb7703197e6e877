from beauty_pipeline.console import results_table

HISTORY = [{"val_accuracy": 0.9}]


def outputs(verdict: str, reasons: list[str]) -> dict:
    return {"classifier": {"history": HISTORY},
            "shortcut_audit": {"verdict": verdict, "verdict_label": verdict, "acc_original": 0.9,
                               "verdict_reasons": reasons}}


def test_the_table_says_why_a_model_is_inconclusive_and_not_why_it_is_named():
    table = results_table({
        "resnet18/white": outputs("inconclusive", ["interval straddles: background/swap: +0.06 "
                                                   "[+0.00, +0.12] vs 0.10"]),
        "resnet18/original": outputs("background", ["background/swap: +0.79 [+0.67, +0.88] vs 0.10"]),
        "efficientnet_b0/white": outputs("chance", ["accuracy 0.55 [0.45, 0.65] not clearly "
                                                    "above chance (0.6)"]),
    })
    why = table.split("\nwhy:\n", 1)[1].splitlines()
    assert why == ["  resnet18/white inconclusive: interval straddles: background/swap: +0.06 "
                   "[+0.00, +0.12] vs 0.10",
                   "  efficientnet_b0/white chance: accuracy 0.55 [0.45, 0.65] not clearly "
                   "above chance (0.6)"]


def test_a_table_of_named_verdicts_has_no_why_block():
    table = results_table({"resnet18/original": outputs("background", ["bg clears"])})
    assert "why:" not in table and len(table.splitlines()) == 3
