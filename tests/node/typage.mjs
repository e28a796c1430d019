// A second age implementation for the interop tests: typage (npm age-encryption), driven from Python.
//
//   node typage.mjs keygen hybrid|x25519     -> prints "<identity>\n<recipient>\n"
//   node typage.mjs encrypt [-a] RECIPIENT…  stdin -> stdout
//   node typage.mjs decrypt [-a] IDENTITY…   stdin -> stdout
//
// Keys are passed as arguments (the tests' throwaway keys only); -a armors or de-armors.
import * as age from "age-encryption";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return new Uint8Array(Buffer.concat(chunks));
}

async function main([command, ...args]) {
  const armored = args[0] === "-a";
  const keys = armored ? args.slice(1) : args;
  if (command === "keygen") {
    const identity =
      keys[0] === "hybrid" ? await age.generateHybridIdentity() : await age.generateX25519Identity();
    process.stdout.write(`${identity}\n${await age.identityToRecipient(identity)}\n`);
  } else if (command === "encrypt") {
    const e = new age.Encrypter();
    for (const r of keys) e.addRecipient(r);
    const out = await e.encrypt(await readStdin());
    process.stdout.write(armored ? age.armor.encode(out) : out);
  } else if (command === "decrypt") {
    const d = new age.Decrypter();
    for (const i of keys) d.addIdentity(i);
    const input = await readStdin();
    const file = armored ? age.armor.decode(new TextDecoder().decode(input)) : input;
    process.stdout.write(await d.decrypt(file));
  } else {
    throw new Error(`unknown command: ${command}`);
  }
}

main(process.argv.slice(2)).catch((err) => {
  process.stderr.write(`typage: ${err.message}\n`);
  process.exit(1);
});
