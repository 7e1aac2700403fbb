"""The lab: architectures side by side, the assess checklist, compare, reports and the demo.

    >>> from ragtune.lab import Lab, load_experiment, assess, load_answers
    >>> lab = Lab(load_experiment(Path("experiment.yaml")), Settings.load(), Path("out")).run()
    >>> lab.recommendation.recommendation
"""

from ragtune.architectures import ARCHITECTURES, Architecture
from ragtune.lab.checklist import (
    Assessment,
    ChecklistAnswers,
    Evidence,
    assess,
    load_answers,
    load_evidence,
)
from ragtune.lab.compare import Lab, states
from ragtune.lab.experiment import (
    SAMPLE_EXPERIMENT,
    Experiment,
    LabQuestion,
    Split,
    load_experiment,
    load_questions,
    split_questions,
)
from ragtune.lab.report import render_html, render_markdown, write_report
from ragtune.lab.result import LabResult, load_lab

__all__ = [
    "ARCHITECTURES", "SAMPLE_EXPERIMENT", "Architecture", "Assessment", "ChecklistAnswers",
    "Evidence", "Experiment", "Lab", "LabQuestion", "LabResult", "Split", "assess",
    "load_answers", "load_evidence", "load_experiment", "load_lab", "load_questions",
    "render_html", "render_markdown", "split_questions", "states", "write_report",
]
