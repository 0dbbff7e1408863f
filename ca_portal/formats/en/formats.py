"""Dates as the portal writes them everywhere (ISO, UTC), also where Django picks the format
itself: the admin's lists and change pages."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = r"Y-m-d H:i \U\T\C"
TIME_FORMAT = "H:i"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = r"Y-m-d H:i \U\T\C"
