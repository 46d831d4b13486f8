// The corpus's Node.js application: an express server whose dependencies are pinned by
// package-lock.json.
const express = require("express");
const minimist = require("minimist");

const args = minimist(process.argv.slice(2));
const app = express();
app.get("/", (_req, res) => res.send("ok"));
app.listen(args.port || 8080);
