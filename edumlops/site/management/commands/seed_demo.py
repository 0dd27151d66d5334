"""Seed the demo district, its calendar, six schools and the demo users. Safe to run again."""

from __future__ import annotations

import os

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone

from edumlops.schools.calendar import school_year_of, typical_school_year
from edumlops.schools.models import CalendarPeriod, District, Membership, School

DEMO_PASSWORD_DEFAULT = "edumlops-demo"

SCHOOLS = [
    # code, name, size band, enrollment, locality, connectivity, hardware, tags
    ("rhs", "Riverside High School", "large", 1450, "urban", "always_on", "server", ["pilot"]),
    (
        "phe",
        "Pine Hollow Elementary",
        "small",
        180,
        "rural",
        "intermittent",
        "old_laptop",
        ["pilot"],
    ),
    ("lms", "Lakeview Middle School", "medium", 640, "urban", "always_on", "desktop", []),
    ("cca", "Cedar Creek Academy", "medium", 520, "rural", "intermittent", "desktop", []),
    ("hvh", "Harbor View High School", "large", 1120, "urban", "always_on", "cloud", []),
    ("mre", "Mill Ridge Elementary", "small", 95, "rural", "offline", "old_laptop", []),
]

USERS = [
    # username, full name, role, school code (or None for district scope), is_superuser
    ("admin", "Ada Admin", Membership.Role.ADMIN, None, True),
    ("dana", "Dana Diaz", Membership.Role.DISTRICT_STAFF, None, False),
    ("tom", "Tom Teller", Membership.Role.TEACHER, "rhs", False),
    ("tara", "Tara Tran", Membership.Role.TEACHER, "phe", False),
]


class Command(BaseCommand):
    help = "Create the demo district, calendar, schools and users (idempotent)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--without-datasets",
            action="store_true",
            help="skip the demo datasets (generated district and OULAD)",
        )

    @transaction.atomic
    def handle(self, *args: object, **options: object) -> None:
        password = os.environ.get("DEMO_PASSWORD", DEMO_PASSWORD_DEFAULT)
        district, _ = District.objects.get_or_create(
            slug="riverside", defaults={"name": "Riverside Unified School District"}
        )
        year = school_year_of(timezone.localdate())
        for period in typical_school_year(year):
            CalendarPeriod.objects.get_or_create(
                district=district,
                kind=period.kind,
                name=period.name,
                start=period.start,
                defaults={"end": period.end},
            )
        schools = {}
        for code, name, size, enrollment, locality, connectivity, hardware, tags in SCHOOLS:
            schools[code], _ = School.objects.get_or_create(
                district=district,
                code=code,
                defaults={
                    "name": name,
                    "size_band": size,
                    "enrollment": enrollment,
                    "locality": locality,
                    "connectivity": connectivity,
                    "hardware": hardware,
                    "tags": tags,
                },
            )
        User = get_user_model()
        lines = []
        for username, full_name, role, school_code, superuser in USERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                first, last = full_name.split(" ", 1)
                user = User.objects.create_user(
                    username,
                    email=f"{username}@riverside.example",
                    password=password,
                    first_name=first,
                    last_name=last,
                    is_staff=superuser,
                    is_superuser=superuser,
                )
            school = schools[school_code] if school_code else None
            Membership.objects.get_or_create(
                user=user,
                role=role,
                school=school,
                district=None if (school or role == Membership.Role.ADMIN) else district,
            )
            where = (
                school.name
                if school
                else ("all districts" if role == Membership.Role.ADMIN else district.name)
            )
            lines.append(f"  {username:<6} / {password}   {role.label} — {where}")
        if not options["without_datasets"]:
            from edumlops.datasets.demo import seed_datasets

            stored = seed_datasets(district)
            for version, created in stored:
                state = "stored" if created else "already stored"
                self.stdout.write(f"Dataset {version}: {version.rows} rows, {state}")
            self._seed_watch_workflow(district, stored[0][0])
        self.stdout.write(f"Demo district: {district.name} ({len(schools)} schools)")
        self.stdout.write("Demo logins (username / password):")
        for line in lines:
            self.stdout.write(line)

    def _seed_watch_workflow(self, district: District, outcomes: object) -> None:
        """The weekly monitoring workflow, so the canvas and the Thresholds page have something
        to show from the first run (it reports "no model deployed" until one is)."""
        from workflows.gallery import WATCH_MODEL, use
        from workflows.models import Workflow

        name = "Watch the deployed models"
        if Workflow.objects.filter(district=district, name=name).exists():
            return
        admin = get_user_model().objects.get(username="admin")
        use(
            WATCH_MODEL,
            district=district,
            user=admin,
            name=name,
            choices={"dataset_version": outcomes.pk},
        )
        self.stdout.write(f"Workflow “{name}” (monitoring, every Monday) made from its template")
