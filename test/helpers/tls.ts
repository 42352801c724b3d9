// Makes a throwaway self-signed certificate for the TLS tests with the openssl
// CLI, so no key material is committed and none outlives the test.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

const INSTALL_HINT = 'openssl is not installed. Install it with: sudo apt-get update && sudo apt-get install -y openssl ' +
  '(macOS: brew install openssl).'

/** A certificate and its key, as files in `dir`, for memcached `-Z` and the client's `ca`. */
export interface SelfSignedCert {
  /** The temp directory holding both files; removed by {@link SelfSignedCert.cleanup}. */
  dir: string
  /** Path of the PEM certificate. */
  cert: string
  /** Path of the PEM private key (unencrypted). */
  key: string
  /** The certificate itself, to trust as `ca`. */
  certPem: Buffer
  cleanup (): Promise<void>
}

/**
 * A self-signed RSA certificate for `CN=localhost`, valid one day, whose
 * subjectAltName covers both `IP:127.0.0.1` and `DNS:localhost`, so the
 * client verifies it whether it connects by address or by name.
 */
export async function makeSelfSignedCert (): Promise<SelfSignedCert> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'memcached-tls-'))
  const cleanup = async (): Promise<void> => { await rm(dir, { recursive: true, force: true }) }
  const cert = path.join(dir, 'cert.pem')
  const key = path.join(dir, 'key.pem')
  try {
    await run('openssl', [
      'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1',
      '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
      '-keyout', key, '-out', cert
    ])
    return { dir, cert, key, certPem: await readFile(cert), cleanup }
  } catch (error) {
    await cleanup()
    // ENOENT from spawn itself means no binary; openssl failing has a numeric code.
    const { code, syscall } = error as NodeJS.ErrnoException
    if (code === 'ENOENT' && syscall?.startsWith('spawn') === true) throw new Error(INSTALL_HINT, { cause: error })
    throw error
  }
}
