/** The pure contract shared by workflows, activities, workers and clients. */
export * from './constants';
export * from './failure';
export * from './canonical-json';
export * from './did-key';
export * from './git-names';
export * from './signing';
export * from './schema';
export * from './parse';
export * from './json-schema';
export * from './progress';
