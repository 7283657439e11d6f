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
