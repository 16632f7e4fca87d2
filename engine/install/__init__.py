"""Putting stationflow on a station: the offline bundle, the service unit, Windows file ACLs."""
