# Shared by the bench scripts (sourced): the agent configuration they run.
# shellcheck shell=bash

# agent_config STATE_DIR INBOX BASE_URL [OVOPARK_ON WDT_ON OVOPARK_CONCURRENCY]
# prints a config with one folder lane and both clouds as the emulator's demo tenant
# (the configuration `tillrelay emulate` prints) at BASE_URL.
agent_config() {
  cat <<TOML
[agent]
state_dir = "$1"
[outbox]
max_size = "2GB"
[[source]]
name = "lane1"
kind = "folder"
path = "$2"
shop = "D001"
machine_id = "NVR01-CH03"
settle = "200ms"

[ovopark]
enabled = ${4:-true}
url = "$3/cloud.api"
aid = "S107"
akey = "demo-akey"
secret = "demo-ovopark-secret"
org_id = "1001"
enterprise_id = "2001"
shop_id = "D001"
timeout_secs = 5
concurrency = ${6:-4}

[wdt]
enabled = ${5:-true}
url = "$3/openapi"
sid = "demo-sid"
key = "demo-key"
secret = "demo-wdt-secret:demo-salt"
shop_no = "SHOP1"
receiver_name = "演示门店"
receiver_area = "上海 上海市 徐汇区"
receiver_address = "漕溪北路1号"
receiver_mobile = "13800000000"
timeout_secs = 5
TOML
}
