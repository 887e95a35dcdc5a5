// Used by `npm run generate` on a developer's machine. stagecraft does not read it:
// it runs `drizzle-kit migrate` with a config it writes, pointing at the migrations
// folder named in stagecraft.yml (`path`) and at $DATABASE_URL.
import { defineConfig } from "drizzle-kit";

export default defineConfig({
  dialect: "postgresql",
  schema: "./src/schema.ts",
  out: "./drizzle",
  dbCredentials: { url: process.env.DATABASE_URL ?? "" },
});
