"""The runtime tier's NetworkPolicy translator (netpol_nft.py) against kube-network-policies'
answers on the corpus of tests/netpol_oracle.rs (written by that test when
RAYGATE_NETPOL_CORPUS names a file). Exits non-zero on any disagreement.

    python3 netpol_nft_corpus.py CORPUS.jsonl
"""
import json
import sys

from netpol_nft import Endpoint, allowed

NAME_LABEL = "kubernetes.io/metadata.name"


def main(path: str) -> int:
    queries = disagreements = 0
    for line in open(path, encoding="utf-8"):
        doc = json.loads(line)
        endpoints = {}
        for pod in doc["pods"]:
            # The API server sets a namespace's name label, whatever was written.
            ns_labels = dict(doc["namespaces"].get(pod["namespace"], {}))
            ns_labels[NAME_LABEL] = pod["namespace"]
            endpoints[pod["name"]] = Endpoint(
                pod["name"], pod["namespace"], pod["ip"], pod["labels"], ns_labels,
                [(p["name"], p["containerPort"], p["protocol"]) for p in pod["ports"]],
            )
        everyone = list(endpoints.values())
        for q in doc["queries"]:
            queries += 1
            ours = allowed(endpoints[q["from"]], endpoints[q["to"]], q["port"], q["protocol"],
                           doc["policies"], everyone)
            if ours != q["allowed"]:
                disagreements += 1
                if disagreements <= 20:
                    print(f"{doc['name']}: {q['from']} -> {q['to']} {q['port']}/{q['protocol']}: "
                          f"kube-network-policies {q['allowed']}, translator {ours}\n"
                          f"  policies: {json.dumps(doc['policies'])}")
    print(f"netpol translator: {disagreements} disagreement(s) in {queries} queries")
    return 1 if disagreements or not queries else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
