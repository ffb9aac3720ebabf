// Sign a webhook with GitHub's official library (@octokit/webhooks-methods), for hookflow's
// verification tests. Reads {"secret", "body"} as JSON on stdin, prints {"headers": {...}}.
// HOOKFLOW_NODE_MODULES names the node_modules folder the library was installed into.
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.HOOKFLOW_NODE_MODULES;
const entry = join(root, "@octokit/webhooks-methods/dist-node/index.js");
const { sign } = await import(pathToFileURL(entry).href);

let input = "";
for await (const chunk of process.stdin) input += chunk;
const { secret, body } = JSON.parse(input);
const signature = await sign(secret, body);
process.stdout.write(JSON.stringify({ headers: { "X-Hub-Signature-256": signature } }));
