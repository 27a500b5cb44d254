/**
 * DECLARATIONS FOR A COMPILE CHECK ONLY (see README.md): the two XS globals that bind TypeScript to C,
 * as the Moddable SDK's xs/includes/xs.d.ts provides them to mcconfig builds. Used only by
 * src/native/xs/tsconfig.check.json so that `tsc` can type-check src/native/xs/*.ts on a machine without
 * the SDK. Never part of a device build (mcconfig uses the SDK's own declarations).
 */
declare function native(name: string): (this: object, ...args: unknown[]) => any;
declare function Native(destructor: string): new () => object;
