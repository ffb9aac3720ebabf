"""Sign a webhook with a provider's official library, for hookflow's verification tests.

Reads {"scheme", "secret", "body", "id", "timestamp"} as JSON on stdin and prints
{"headers": {...}} with the headers the provider would send.
"""

import json
import sys
from datetime import datetime, timezone

req = json.load(sys.stdin)
scheme, secret, body, ts = req["scheme"], req["secret"], req["body"], int(req["timestamp"])

if scheme == "stripe":
    import stripe

    header = stripe.WebhookSignature.generate_signature_header(payload=body, secret=secret, timestamp=ts)
    headers = {"Stripe-Signature": header}
elif scheme == "standard_webhooks":
    from standardwebhooks import Webhook

    sig = Webhook(secret).sign(req["id"], datetime.fromtimestamp(ts, tz=timezone.utc), body)
    headers = {"webhook-id": req["id"], "webhook-timestamp": str(ts), "webhook-signature": sig}
elif scheme == "slack":
    from slack_sdk.signature import SignatureVerifier

    sig = SignatureVerifier(signing_secret=secret).generate_signature(timestamp=str(ts), body=body)
    headers = {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": str(ts)}
else:
    sys.exit(f"unknown scheme {scheme}")

json.dump({"headers": headers}, sys.stdout)
