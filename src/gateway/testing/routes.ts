/**
 * The route the gateway's tests (the route table's, the proxy's) enforce first: a ticket
 * read whose parameters are its path and its query. One copy, so they test the same entry.
 */
export const TICKET_READ_ROUTE = {
  method: 'GET',
  path: '/tickets/:id',
  action: 'tickets.read',
  resource: 'ticket:{id}',
  parameters: ['path', 'query'],
};
