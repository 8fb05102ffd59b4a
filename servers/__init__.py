"""netready's central servers (installed as ``netready.servers``): what the site agents'
probes measure against, run at the central site or on HSCN.

- ``reflector``: the TWAMP-light reflector (``netready reflector``) for the rtt probe;
- ``responder``: the media responder (``netready responder``), the far end of the media
  probe's emulated calls;
- ``speed``: the speed-test endpoint (``netready serve``, the ``server`` extra: aiohttp) for
  the throughput probe;
- ``config``: the fleet's configuration server (``netready config serve``, the ``server``
  extra): each site's signed slice of the inventory (``netready/fleet.py``, docs/fleet.md);
- ``guard``: what they share: the allow-list, the token bucket, address-validation cookies
  and the rate-limited (counted) log.

A server imports only the plugins' sans-IO wire modules (``probes/rtt/twamp.py``,
``probes/throughput/wire.py``, the media wire format), never a probe's socket edge or its
plugin declaration; no probe or collector imports a server (``tests/test_layering.py``).
"""
