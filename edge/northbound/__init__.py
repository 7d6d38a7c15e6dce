"""The northbound OPC-UA server: the station's thing model for SCADA integrators (values with
units and quality, alarms as conditions, history, writes and services as methods), with users,
roles and certificates."""
