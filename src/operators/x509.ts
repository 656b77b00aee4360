/**
 * @peculiar/x509 with the Reflect polyfill it needs (it resolves its ASN.1 schemas through
 * tsyringe). Import x509 from here, never from the package, so the polyfill always loads first.
 */
import 'reflect-metadata';

export * from '@peculiar/x509';
