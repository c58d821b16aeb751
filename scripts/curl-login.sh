#!/usr/bin/env bash
# Log in to an opsconsole with nothing but curl, jq and ssh-keygen; prints the bearer token.
#
#   TOKEN=$(scripts/curl-login.sh URL USER KEY CODE)
#   curl -H "Authorization: Bearer $TOKEN" URL/ops/whoami
#
# KEY is the private key file, or KEY.pub to sign through ssh-agent (ssh-keygen does that
# when given a public key whose private half is in the agent). CODE is the current TOTP code.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 URL USER KEY TOTP_CODE" >&2; exit 2; }
url=${1%/} user=$2 key=$3 code=$4

challenge=$(curl -fsS -H 'Content-Type: application/json' \
    -d "$(jq -n --arg u "$user" '{user: $u}')" "$url/ops/auth/challenge")
nonce=$(jq -r .nonce <<<"$challenge")
# -j prints the message exactly, without adding a newline: the signature covers every byte.
signature=$(jq -j .message <<<"$challenge" | ssh-keygen -q -Y sign -n opsconsole -f "$key")

curl -fsS -H 'Content-Type: application/json' \
    -d "$(jq -n --arg u "$user" --arg n "$nonce" --arg s "$signature" --arg t "$code" \
          '{user: $u, nonce: $n, signature: $s, totp: $t}')" \
    "$url/ops/auth/login" | jq -r .token
