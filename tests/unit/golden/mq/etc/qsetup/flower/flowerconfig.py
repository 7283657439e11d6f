# Managed by qsetup. Flower's settings; holds credentials, so it is readable
# only by root and the flower group.
address = '0.0.0.0'
port = 8080
url_prefix = 'flower'
basic_auth = ['Admin:admin-password-xxxxxxxxxxx', 'oncall:oncall-password-xxxxxxxxxx']
broker_api = 'http://monitor:monitor-password-xxxxxxxxx@mq.example.org:15673/api/'
persistent = False
db = "/var/lib/qsetup-flower/flower.db"
state_save_interval = 60000
purge_offline_workers = 3600
# Flower serves /metrics without asking for credentials; make it ask like every other
# page. A Flower whose layout qsetup does not know refuses to start rather than expose it.
try:
    import tornado.web as _web
    from flower.views import monitor as _monitor

    _monitor.Metrics.get = _web.authenticated(_monitor.Metrics.get)
except (ImportError, AttributeError) as _exc:
    raise SystemExit(f"qsetup: cannot put Flower's /metrics behind basic auth: {_exc}")
