// esbuild bundles the stylesheets main.tsx imports; they export nothing.
declare module "*.css";
