import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/**", "lib/**", "node_modules/**", "coverage/**", "bench/results/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: {
        process: "readonly",
        console: "readonly",
        Buffer: "readonly",
        setTimeout: "readonly",
        clearTimeout: "readonly",
        setInterval: "readonly",
        clearInterval: "readonly",
        URL: "readonly",
      },
    },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            { group: ["@actions/*", "@kubernetes/*"], message: "src/engine must not import an edge's SDK." },
          ],
        },
      ],
    },
  },
  {
    files: ["test/**", "scripts/**"],
    rules: { "no-restricted-imports": "off" },
  },
  {
    // The edges stand on the engine's public API alone (src/engine/index.ts).
    files: ["src/action/**", "src/controller/**", "bench/**"],
    rules: {
      "no-restricted-imports": [
        "error",
        {
          patterns: [
            {
              group: ["**/engine/*", "!**/engine/index.js"],
              message:
                "an edge imports the engine only through src/engine/index.ts (export what it needs there).",
            },
          ],
        },
      ],
    },
  },
);
