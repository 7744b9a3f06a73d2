"""Coded concepts of the results, all from DICOM's own vocabularies (PS3.16), none private.

Probability of cancer is the concept Mammography CAD SR uses for it (CID 6048); morphology and
distribution are BI-RADS' calcification descriptors (CID 6010 and CID 6012), so an archive or
viewer that knows mammography reads them without a private dictionary.
"""

from __future__ import annotations

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

PROCEDURE = codes.SCT.Mammography
FINDING = codes.SCT.CalcificationCluster
PROBABILITY = codes.DCM.ProbabilityOfCancer
THRESHOLD = codes.DCM.ThresholdValue
DECISION = codes.DCM.Impression
NO_UNITS = codes.UCUM.NoUnits
CLASSES = {"benign": codes.SCT.Benign, "malignant": codes.SCT.Malignant}
MORPHOLOGY = codes.DCM.CalcificationType
DISTRIBUTION = codes.DCM.CalcificationDistribution
MORPHOLOGIES = {
    "punctate": codes.SCT.PunctateCalcification,
    "round": codes.SCT.RoundShapedCalcification,
    "coarse_popcorn": codes.SCT.CoarsePopcornLikeCalcification,
    # BI-RADS 5th edition's "rim" was "eggshell or rim" before; CID 6010 keeps the older name.
    "rim": codes.SCT.EggshellCalcification,
    "vascular": Code("129759000", "SCT", "Vascular calcification"),
    "amorphous": codes.SCT.AmorphousCalcification,
    "coarse_heterogeneous": codes.SCT.HeterogeneousCalcification,
    "fine_pleomorphic": codes.DCM.FinePleomorphicCalcification,
    "fine_linear_branching": codes.SCT.FineLinearBranchingCastingCalcification,
    "dystrophic": codes.SCT.DystrophicCalcification,
    "milk_of_calcium": codes.SCT.MilkOfCalciumCalcification,
    "skin": codes.SCT.CalcifiedSkinOfBreast,
    "suture": codes.SCT.CalcifiedSutureMaterial,
    "large_rodlike": codes.SCT.LargeRodLikeCalcification,
}
DISTRIBUTIONS = {
    "diffuse": codes.SCT.DiffuseCalcificationDistribution,
    "regional": codes.SCT.RegionalCalcificationDistribution,
    "grouped": codes.SCT.GroupedCalcificationDistribution,
    "linear": codes.SCT.LinearCalcificationDistribution,
    "segmental": codes.SCT.SegmentalCalcificationDistribution,
}


def term_for(code, table: dict) -> str | None:
    """The project's term for a coded value read back (None when the table lacks it)."""
    for term, known in table.items():
        if str(known.value) == str(code.value) and str(known.scheme_designator) == str(
            code.scheme_designator
        ):
            return term
    return None
