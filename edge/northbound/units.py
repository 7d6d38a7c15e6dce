"""Thing-model unit strings → OPC-UA EUInformation with UNECE Recommendation 20 common codes
(OPC UA Part 8 §5.6.3: UnitId is the code's ASCII characters packed big-endian)."""

from __future__ import annotations

from asyncua import ua

UNECE_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"

# unit as written in models → (UNECE common code, English description).  Units with no code of
# their own (%LEL, %vol, Nm³/h) use the closest one and keep their own display name, so a SCADA
# shows what the model says while a unit-aware client still sees a dimension it knows.
_UNECE: dict[str, tuple[str, str]] = {
    "MPa": ("MPA", "megapascal"),
    "kPa": ("KPA", "kilopascal"),
    "Pa": ("PAL", "pascal"),
    "bar": ("BAR", "bar"),
    "°C": ("CEL", "degree Celsius"),
    "K": ("KEL", "kelvin"),
    "%": ("P1", "percent"),
    "%LEL": ("P1", "percent of the lower explosive limit"),
    "%vol": ("P1", "percent by volume"),
    "ppm": ("59", "part per million"),
    "m3": ("MTQ", "cubic metre"),
    "Nm3": ("MTQ", "normal cubic metre (0 °C, 101.325 kPa)"),
    "m3/h": ("MQH", "cubic metre per hour"),
    "Nm3/h": ("MQH", "normal cubic metre per hour (0 °C, 101.325 kPa)"),
    "V": ("VLT", "volt"),
    "mV": ("2Z", "millivolt"),
    "mA": ("4K", "milliampere"),
    "A": ("AMP", "ampere"),
    "dBm": ("2N", "decibel, referenced to one milliwatt"),
    "s": ("SEC", "second"),
    "h": ("HUR", "hour"),
    "Hz": ("HTZ", "hertz"),
    "kW": ("KWT", "kilowatt"),
    "m": ("MTR", "metre"),
    "mm": ("MMT", "millimetre"),
}

_DISPLAY = {"m3": "m³", "Nm3": "Nm³", "m3/h": "m³/h", "Nm3/h": "Nm³/h"}


def unit_id(code: str) -> int:
    value = 0
    for ch in code:
        value = (value << 8) | ord(ch)
    return value


def eu_information(unit: str) -> ua.EUInformation:
    """EUInformation for a model unit; a unit with no UNECE code gets UnitId -1 (Part 8: unknown)."""
    known = _UNECE.get(unit)
    eu = ua.EUInformation()
    eu.NamespaceUri = UNECE_NAMESPACE
    eu.UnitId = unit_id(known[0]) if known else -1
    eu.DisplayName = ua.LocalizedText(_DISPLAY.get(unit, unit), "en")
    eu.Description = ua.LocalizedText(known[1] if known else unit, "en")
    return eu
