// Compile report.scss (the NHS.UK frontend parts the report uses) into nhsuk-frontend.min.css.
// The icons the styles reference (/assets/images/*.svg) are inlined as data: URIs, so the
// report needs no file and no network. Run by `make css` after `npm ci` here; the output is
// committed, so neither a wheel nor a report needs node.
import { readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as sass from "sass";

const here = dirname(fileURLToPath(import.meta.url));
const frontend = join(here, "node_modules", "nhsuk-frontend");
const version = JSON.parse(readFileSync(join(frontend, "package.json"), "utf8")).version;
const images = join(frontend, "dist", "nhsuk", "assets", "images");

let css = sass.compile(join(here, "report.scss"), {
  style: "compressed",
  loadPaths: [join(here, "node_modules")],
  quietDeps: true,
}).css.replace(/^\uFEFF/, "");
css = css.replace(/url\("?\/assets\/images\/([\w.-]+\.svg)"?\)/g, (_, name) => {
  const svg = readFileSync(join(images, name), "utf8").trim();
  return `url("data:image/svg+xml,${encodeURIComponent(svg)}")`;
});
if (/url\((?!"?data:)/.test(css)) throw new Error("a url() that is not inlined is left");
const head = `/*! nhsuk-frontend ${version} (MIT, LICENSE-nhsuk-frontend.txt), parts in report.scss */\n`;
writeFileSync(join(here, "nhsuk-frontend.min.css"), head + css + "\n");
console.log(`nhsuk-frontend ${version}: ${css.length} bytes`);
