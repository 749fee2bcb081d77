/** The image reference grammar the manager checks a task's image with (lib/image-ref.ts). */
import test from "ava";
import { imageProblem } from "../lib/image-ref.js";

const DIGEST = `sha256:${"a".repeat(64)}`;

const GOOD: [string, string][] = [
  ["a bare name", "busybox"],
  ["a path with a tag", "cube/httpd:local"],
  ["a registry with a port", "127.0.0.1:5000/cube/does-not-exist:1"],
  ["a host name registry", "registry.example.com/team/app:v1.2.3"],
  ["localhost", "localhost:5000/app"],
  ["an IPv6 registry", "[::1]:5000/app:1"],
  ["a capital in the domain", "Registry.Example.com/app"],
  ["separators", "a.b_c__d-e---f/g"],
  ["a digest", `app@${DIGEST}`],
  ["a tag and a digest", `cube/httpd:local@${DIGEST}`],
  ["a tag of 128", `app:${"t".repeat(128)}`],
];

const BAD: [string, string][] = [
  ["capitals in the path", "UPPER/Case:tag"],
  ["a capital in a one-part name", "Busybox"],
  ["a tag starting with '-'", "app:-x"],
  ["a tag of 129", `app:${"t".repeat(129)}`],
  ["an empty tag", "app:"],
  ["a leading separator", "-app"],
  ["a trailing separator", "app-"],
  ["a double slash", "cube//httpd"],
  ["a short digest", "app@sha256:abc"],
  ["a scheme", "https://registry/app"],
  ["a name over 255", `${"a".repeat(256)}`],
];

for (const [name, image] of GOOD) {
  test(`taken: ${name} (${image.slice(0, 40)})`, (t) => {
    t.is(imageProblem(image), undefined);
  });
}

for (const [name, image] of BAD) {
  test(`refused: ${name}`, (t) => {
    t.truthy(imageProblem(image));
  });
}

test("a name over 255 characters is named as such", (t) => {
  t.is(imageProblem("a".repeat(256)), "its repository name is over 255 characters");
});
