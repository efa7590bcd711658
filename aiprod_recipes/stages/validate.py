"""validate: the first stage. The whole spec is checked before DVC touches any output, and
written out resolved (every section, defaults filled in) for the other stages' params.

DVC removes a stage's outputs before it runs the stage's command, so a check inside that
stage comes too late: a bad value would already have cost the output. This stage depends on
the spec file itself (DVC hashes the bytes and never parses them, so even a file that is
not TOML reaches the check), and every other stage reads its params from the file written
here, which puts this stage upstream of all of them. The runtime has validated the spec
and checked that dvc.yaml is current before ``run`` is called; a problem stops ``dvc
repro`` here, with the same list of errors ``aiprod-recipes validate`` prints, and nothing
else runs or is removed (this output is persistent and only replaced on success).

Because the other stages see resolved values, a section left out of params.toml, or a
default written out explicitly, is the same value to DVC and reruns nothing but this
(cheap) stage. The file is small and committed to git (not DVC's cache), so a fresh clone,
``dvc status`` and ``dvc repro --pull --allow-missing`` all read it without a download.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiprod_recipes.names import RESOLVED_SPEC_FILE
from aiprod_recipes.spec import SECTIONS, Spec
from aiprod_recipes.specio import resolved_text

if TYPE_CHECKING:  # annotations only: the stage's code is what it runs
    from aiprod_recipes.stages.context import Report, StagePaths


def run(spec: Spec, paths: StagePaths) -> Report:
    (paths.out / RESOLVED_SPEC_FILE).write_text(resolved_text(spec), encoding="utf-8")
    return {"sections": len(SECTIONS)}
