"""Entity-level precision, recall and F1 by seqeval, strict IOB2 spans (the CoNLL evaluation)."""

from seqeval.metrics import classification_report
from seqeval.scheme import IOB2


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """`{"precision", "recall", "f1", "per_type": {type: {precision, recall, f1, support}}}`,
    overall figures micro-averaged over entities, as conlleval."""
    report = classification_report(
        gold, predicted, mode="strict", scheme=IOB2, output_dict=True, zero_division=0
    )
    overall = report.pop("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    per_type = {
        name: _figures(values) | {"support": int(values["support"])}
        for name, values in sorted(report.items())
        if not name.endswith(" avg")
    }
    return _figures(overall) | {"per_type": per_type}


def _figures(values: dict) -> dict:
    return {
        "precision": float(values["precision"]),
        "recall": float(values["recall"]),
        "f1": float(values["f1-score"]),
    }


def format_scores(name: str, scores: dict) -> list[str]:
    """A small table: one row per entity type, then the overall figures, in percent."""
    lines = [f"{name:<14} {'precision':>9} {'recall':>7} {'F1':>6} {'entities':>8}"]
    for entity, values in scores["per_type"].items():
        lines.append(
            f"  {entity:<12} {100 * values['precision']:9.2f} {100 * values['recall']:7.2f} "
            f"{100 * values['f1']:6.2f} {values['support']:8d}"
        )
    total = sum(v["support"] for v in scores["per_type"].values())
    lines.append(
        f"  {'overall':<12} {100 * scores['precision']:9.2f} {100 * scores['recall']:7.2f} "
        f"{100 * scores['f1']:6.2f} {total:8d}"
    )
    return lines
