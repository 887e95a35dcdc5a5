// Prisma's config: migrations talk to PostgreSQL through the `pg` driver adapter,
// so Prisma runs its schema engine as WebAssembly (shipped in the `prisma` package)
// and downloads no engine binary at install or run time.
import { PrismaPg } from "@prisma/adapter-pg";
import { defineConfig } from "prisma/config";

export default defineConfig({
  experimental: { adapter: true },
  engine: "js",
  schema: "prisma/schema.prisma",
  async adapter() {
    return new PrismaPg({ connectionString: process.env.DATABASE_URL });
  },
});
