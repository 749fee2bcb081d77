/**
 * Image references as the engine reads them (Docker's distribution reference grammar):
 * `[domain[:port]/]path[:tag][@digest]`, the path lowercase components joined by `/`. The
 * manager checks a task's image with it, so a name the engine would refuse is
 * INVALID_ARGUMENT at submission instead of a task FAILED on a worker.
 */

const ALNUM = "[a-z0-9]+";
const SEPARATOR = "(?:[._]|__|[-]+)";
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const TAG = "[\\w][\\w.-]{0,127}";
const DIGEST = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const REFERENCE = new RegExp(
  `^((?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*)(?::(${TAG}))?(?:@(${DIGEST}))?$`,
);

/** Docker's bound on a repository name (domain and path). */
export const MAX_IMAGE_NAME = 255;

/**
 * Why `image` is not a reference the engine takes, in words for people; undefined when it is.
 */
export function imageProblem(image: string): string | undefined {
  const m = REFERENCE.exec(image);
  if (!m) {
    return "not an image reference: [host[:port]/]path[:tag][@digest], the path in lowercase letters and digits, separated by '/', '.', '_', '__' or '-'";
  }
  if ((m[1] as string).length > MAX_IMAGE_NAME) {
    return `its repository name is over ${MAX_IMAGE_NAME} characters`;
  }
  return undefined;
}
