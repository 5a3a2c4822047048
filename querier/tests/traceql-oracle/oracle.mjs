#!/usr/bin/env node
// TraceQL syntax oracle backed by Grafana's lezer grammar (@grafana/lezer-traceql).
//
// Input (stdin): one JSON string per line, e.g.  "{ span.http.status_code = 500 }"
//                Blank lines are ignored.
// Output (stdout): one JSON object per input query, in input order:
//                {"query": <string>, "ok": <bool>, "errorAt": <UTF-16 offset | null>}
//
// lezer is error-tolerant: it always returns a tree, inserting error nodes ("⚠",
// node.type.isError) where it had to recover. A query is ok iff its tree has no
// error node; errorAt is the start offset of the first error node (a JS string
// index, i.e. UTF-16 code units, not bytes).
//
// Options:
//   --no-template-vars   also reject Grafana template variables ($var, ${var},
//                        ${var:fmt}), which the grammar accepts but Tempo does not.
//                        errorAt then points at the variable.
//
// Exit status: 0 on success (whatever the verdicts), 2 on malformed input lines.
// See README.md for what this oracle does and does not cover.

import { createInterface } from 'node:readline';
import { parser } from '@grafana/lezer-traceql';

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--no-template-vars');
if (unknown.length > 0) {
  process.stderr.write(`oracle.mjs: unknown argument(s): ${unknown.join(' ')}\n`);
  process.exit(2);
}
const rejectTemplateVars = args.includes('--no-template-vars');

// The package exposes exactly one top rule, "TraceQL"; there are no dialects.
const TOP = 'TraceQL';
if (parser.topNode.name !== TOP) {
  process.stderr.write(`oracle.mjs: unexpected top rule ${parser.topNode.name}\n`);
  process.exit(2);
}

function check(query) {
  const tree = parser.parse(query);
  let errorAt = null;
  tree.iterate({
    enter(node) {
      if (errorAt !== null) return false;
      const isTemplateVar =
        rejectTemplateVars &&
        (node.name === 'TemplateVariable' ||
          (node.name === 'Identifier' && query.startsWith('${', node.from)));
      if (node.type.isError || isTemplateVar) {
        errorAt = node.from;
        return false;
      }
      return undefined;
    },
  });
  return { query, ok: errorAt === null, errorAt };
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
let lineNo = 0;
const out = [];
for await (const line of rl) {
  lineNo += 1;
  if (line.trim() === '') continue;
  let query;
  try {
    query = JSON.parse(line);
  } catch (e) {
    process.stderr.write(`oracle.mjs: line ${lineNo}: not valid JSON: ${e.message}\n`);
    process.exitCode = 2;
    break;
  }
  if (typeof query !== 'string') {
    process.stderr.write(`oracle.mjs: line ${lineNo}: expected a JSON string, got ${typeof query}\n`);
    process.exitCode = 2;
    break;
  }
  out.push(JSON.stringify(check(query)));
  if (out.length >= 1024) {
    process.stdout.write(out.join('\n') + '\n');
    out.length = 0;
  }
}
if (out.length > 0) process.stdout.write(out.join('\n') + '\n');
