"""Generate a synthetic school district (CSV) and, optionally, store it as a dataset version."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from edumlops.ml.synth import Bias, generate_district


class Command(BaseCommand):
    help = (
        "Generate realistic synthetic student-term rows (schools of different sizes and "
        "localities, grades, sensitive attributes, engagement features with seasonal patterns "
        "and cohort drift). Writes CSV to --output (or stdout), or stores it with --dataset. "
        "With --grades the rows have a numeric final_grade (0-20) and no yes/no at_risk column, "
        "plus two earlier-term grades that leak it: define the outcome (e.g. final_grade < 10) "
        "on the dataset's page."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rows", type=int, default=6000, help="number of student-term rows")
        parser.add_argument(
            "--years",
            type=int,
            nargs="+",
            default=[2024, 2025],
            help="school years by their starting year (e.g. 2024 2025)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--drift", type=float, default=1.0, help="0 = no cohort drift")
        parser.add_argument(
            "--bias",
            metavar="ATTRIBUTE=GROUP",
            help="inject bias against a group, e.g. english_learner=yes",
        )
        parser.add_argument("--bias-strength", type=float, default=1.0)
        parser.add_argument(
            "--grades",
            action="store_true",
            help="a numeric final_grade (0-20) instead of the at_risk label, with grade_term1 and "
            "grade_term2 (earlier terms) that predict it almost perfectly; no label is marked: "
            "define the outcome from final_grade on the dataset's page or with PATCH "
            "/api/dataset-versions/{id}/",
        )
        parser.add_argument("--output", type=Path, help="CSV file to write (default: stdout)")
        parser.add_argument(
            "--dataset", help="store the rows as a new version of this dataset instead"
        )
        parser.add_argument("--district", default="riverside", help="district slug (--dataset)")

    def handle(self, *args: Any, **opts: Any) -> None:
        bias = None
        if opts["bias"]:
            attribute, sep, group = opts["bias"].partition("=")
            if not sep:
                raise CommandError("--bias takes ATTRIBUTE=GROUP, e.g. english_learner=yes")
            bias = Bias(attribute=attribute, group=group, strength=opts["bias_strength"])
        try:
            frame = generate_district(
                opts["rows"],
                school_years=opts["years"],
                seed=opts["seed"],
                bias=bias,
                drift=opts["drift"],
                grades=opts["grades"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if opts["dataset"]:
            from edumlops.datasets.models import store_generated
            from edumlops.schools.models import District

            district = District.objects.filter(slug=opts["district"]).first()
            if district is None:
                raise CommandError(f"No district '{opts['district']}': run seed_demo first.")
            version, created = store_generated(
                district, opts["dataset"], frame, labelled=not opts["grades"]
            )
            what = "Stored" if created else "Already stored as"
            self.stdout.write(f"{what} {version} ({version.rows} rows, sha256 {version.sha256})")
            return
        if opts["output"]:
            frame.to_csv(opts["output"], index=False)
            self.stdout.write(f"Wrote {len(frame)} rows to {opts['output']}")
        else:
            frame.to_csv(sys.stdout, index=False)
