// Asks the backend (same origin: the dev Traefik routes /api to it) for the
// greeting and the items, and shows them. #status says `loaded` once both
// answered, or the error.

async function getJson(path) {
  const response = await fetch(path, { headers: { Accept: 'application/json' } });
  if (!response.ok) {
    throw new Error(`GET ${path} answered ${response.status}`);
  }
  return response.json();
}

function showItems(list, items) {
  list.replaceChildren(
    ...items.map((item) => {
      const li = document.createElement('li');
      li.textContent = item.name;
      return li;
    }),
  );
}

async function load() {
  const status = document.getElementById('status');
  try {
    const [hello, items] = await Promise.all([getJson('/api/hello'), getJson('/api/items')]);
    document.getElementById('greeting').textContent = hello.message;
    showItems(document.getElementById('items'), items);
    status.textContent = 'loaded';
    status.className = 'ok';
  } catch (error) {
    status.textContent = `error: ${error.message}`;
    status.className = 'error';
  }
}

load();
