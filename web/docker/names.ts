/**
 * Names for services created without one, as Docker makes them (`adjective_surname`, after
 * Docker's own generator, which names them after scientists and hackers).
 *
 * @module
 */

const ADJECTIVES = [
  "admiring",
  "brave",
  "busy",
  "clever",
  "dazzling",
  "eager",
  "elegant",
  "focused",
  "gallant",
  "happy",
  "jolly",
  "keen",
  "lucid",
  "modest",
  "nifty",
  "optimistic",
  "pensive",
  "quirky",
  "relaxed",
  "serene",
  "sharp",
  "tender",
  "upbeat",
  "vibrant",
  "wizardly",
  "youthful",
  "zen",
];

const SURNAMES = [
  "agnesi",
  "babbage",
  "bohr",
  "curie",
  "darwin",
  "euclid",
  "faraday",
  "galileo",
  "hopper",
  "hypatia",
  "johnson",
  "kepler",
  "lamarr",
  "lovelace",
  "meitner",
  "newton",
  "noether",
  "pascal",
  "ritchie",
  "shannon",
  "thompson",
  "turing",
  "volta",
  "wozniak",
  "yalow",
  "zuse",
];

/** A random `adjective_surname` name not taken according to `taken`. */
export function randomName(taken: (name: string) => boolean): string {
  const pick = (list: string[]) => list[Math.floor(Math.random() * list.length)];
  for (let attempt = 0; attempt < 100; attempt++) {
    const name = `${pick(ADJECTIVES)}_${pick(SURNAMES)}`;
    const candidate = attempt < 10 ? name : `${name}${attempt}`;
    if (!taken(candidate)) return candidate;
  }
  return `service_${Date.now().toString(36)}`;
}
