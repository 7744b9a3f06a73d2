"""The software as a DICOM device: who made the observations in a result."""

from __future__ import annotations

from microcalcai import __version__

MANUFACTURER = "MicrocalcAI"
MODEL_NAME = "MicrocalcAI microcalcification classifier"
SERIES_DESCRIPTIONS = {
    "classification": "MicrocalcAI classification",
    "saliency": "MicrocalcAI saliency",
    "label": "MicrocalcAI labels",
}
# A result of a model trained on synthetic mammograms must say so where an archive lists it
# (the series description, 64 characters at most) and in the model's identification.
DEMONSTRATION_SERIES = " (DEMONSTRATION MODEL)"
DEMONSTRATION_PARAMETER = (
    "intended_use=demonstration model trained on synthetic (phantom) mammograms; not for real images"
)


def series_description(kind: str, demonstration: bool = False) -> str:
    return SERIES_DESCRIPTIONS[kind] + (DEMONSTRATION_SERIES if demonstration else "")


def device_uid() -> str:
    """A stable UID per software version, so every result of one release names the same device."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["microcalcai-device", __version__])


def device_observer():
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=device_uid(),
            name="MicrocalcAI",
            manufacturer_name=MANUFACTURER,
            model_name=MODEL_NAME,
            serial_number=__version__,
        ),
    )


def person_observer(name: str):
    import highdicom as hd
    from pydicom.sr.codedict import codes

    return hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name=person_name(name)),
    )


def person_name(name: str) -> str:
    """An annotator id as a DICOM PN: '^' separates name parts, so a login stays one family name."""
    text = "".join(ch if ch.isprintable() and ch not in "\\^=" else " " for ch in str(name)).strip()
    return (text or "anonymous")[:64]
