# The self-signed certificate step of the chart's hook Job (templates/certgen.yaml),
# run by /bin/sh in an image with kubectl, after `raygate certs` wrote ca.crt,
# tls.crt and tls.key into $CERT_DIR. It
#   1. keeps the Secret $SECRET when this script wrote it for the same $HOSTS and it
#      is more than $RENEW_BEFORE_DAYS days from expiry; else writes the new
#      certificates into it (create, or update in place: raygate hot-reloads it);
#   2. patches every webhook's caBundle in the Validating- and
#      MutatingWebhookConfiguration $WEBHOOK that exist (on a fresh install they
#      do only after the pre-install run, so the post-install run patches them).
# On renewal the caBundle holds the old and the new CA, so the API server trusts
# the serving certificate before and after the kubelet swaps the mounted Secret;
# the next run drops the old CA.
# Env: NAMESPACE SECRET WEBHOOK HOSTS DAYS RENEW_BEFORE_DAYS CERT_DIR [KUBECTL]
set -eu
k() { ${KUBECTL:-kubectl} "$@"; }
log() { printf '[raygate-certgen] %s\n' "$*" >&2; }

now=$(date +%s)
secret=$(k get secret "$SECRET" -n "$NAMESPACE" --ignore-not-found \
	-o 'jsonpath={.metadata.annotations.raygate\.dev/not-after} {.metadata.annotations.raygate\.dev/hosts} {.data.ca\.crt}')
not_after="" hosts="" old_ca=""
if [ -n "$secret" ]; then
	# shellcheck disable=SC2086 # three space-separated fields, or fewer
	set -- $secret
	case "$#" in
	3) not_after=$1 hosts=$2 old_ca=$3 ;;
	*) old_ca=$(k get secret "$SECRET" -n "$NAMESPACE" -o 'jsonpath={.data.ca\.crt}') ;;
	esac
fi

if [ -n "$not_after" ] && [ "$hosts" = "$HOSTS" ] && [ "$now" -lt $((not_after - RENEW_BEFORE_DAYS * 86400)) ]; then
	log "secret $NAMESPACE/$SECRET is valid until $not_after (epoch) for $HOSTS: kept"
	bundle=$old_ca
else
	k create secret generic "$SECRET" -n "$NAMESPACE" --type=kubernetes.io/tls \
		--from-file=tls.crt="$CERT_DIR/tls.crt" --from-file=tls.key="$CERT_DIR/tls.key" \
		--from-file=ca.crt="$CERT_DIR/ca.crt" --dry-run=client -o yaml >"$CERT_DIR/secret.yaml"
	k annotate --local -f "$CERT_DIR/secret.yaml" -o yaml \
		raygate.dev/not-after="$((now + DAYS * 86400))" raygate.dev/hosts="$HOSTS" >"$CERT_DIR/secret.annotated.yaml"
	if [ -n "$secret" ]; then
		k replace -f "$CERT_DIR/secret.annotated.yaml" >&2
		log "secret $NAMESPACE/$SECRET: renewed for $HOSTS"
	else
		k create -f "$CERT_DIR/secret.annotated.yaml" >&2
		log "secret $NAMESPACE/$SECRET: created for $HOSTS"
	fi
	rm -f "$CERT_DIR/secret.yaml" "$CERT_DIR/secret.annotated.yaml"
	if [ -n "$old_ca" ]; then
		bundle=$({ printf '%s' "$old_ca" | base64 -d; cat "$CERT_DIR/ca.crt"; } | base64 | tr -d '\n')
	else
		bundle=$(base64 <"$CERT_DIR/ca.crt" | tr -d '\n')
	fi
fi

for kind in validatingwebhookconfiguration mutatingwebhookconfiguration; do
	names=$(k get "$kind" "$WEBHOOK" --ignore-not-found -o 'jsonpath={range .webhooks[*]}{.name}{" "}{end}')
	if [ -z "$names" ]; then
		log "$kind/$WEBHOOK: not there yet; the post-install run patches it"
		continue
	fi
	ops="" i=0
	for _ in $names; do
		ops="$ops${ops:+,}{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"}"
		i=$((i + 1))
	done
	k patch "$kind" "$WEBHOOK" --type=json -p "[$ops]" >&2
	log "$kind/$WEBHOOK: caBundle of $i webhook(s) set"
done
