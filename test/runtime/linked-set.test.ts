import t from 'tap';
import { LinkedSet, type Linked } from '../../src/runtime/linked-set.js';

class Item implements Linked<Item> {
  prev: Item | undefined;
  next: Item | undefined;
  constructor(readonly name: string) {}
}

t.test('add, delete from any place, and a snapshot that survives deletes', async (t) => {
  const set = new LinkedSet<Item>();
  const [a, b, c] = [new Item('a'), new Item('b'), new Item('c')];
  for (const i of [a, b, c]) set.add(i);
  t.equal(set.size, 3);
  set.delete(b);
  t.same(set.toArray().map((i) => i.name), ['c', 'a'], 'the middle one is gone, the others keep their order');
  for (const i of set.toArray()) set.delete(i);
  t.equal(set.size, 0);
  t.same(set.toArray(), []);
  set.delete(a);
  t.equal(set.size, 0, 'deleting what is not there changes nothing');
  set.add(a);
  t.same(set.toArray().map((i) => i.name), ['a'], 'a deleted item can come back');
});
