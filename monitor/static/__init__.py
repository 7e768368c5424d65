"""Static files the monitor serves under ``/static``: the ``<feltsafe-indicator>`` web
component and the demo call page. A package only so that they ship with the wheel."""
