"""Chinese text in a widget drawn over another (a notification, a dropdown, a tooltip) keeps
every character: Textual's compositor cuts each line at every widget's edge, also at the
edges of the widgets underneath, and a double-width character straddling such a cut becomes
two spaces (Textual issue #6357: "未保存：" over the settings panel's border read "未保  ").

The fix (after the one proposed upstream): where the topmost widget on a stretch of a line
owns several neighbouring pieces, it is cut once for the whole stretch, so only its real edges
split a character. The stretch's other pieces get an empty strip (so no widget underneath
claims them), and a partial update knows where the merged piece ends.

`install()` replaces `Compositor._render_chops` and `render_partial_update`; a test checks
Textual still has them and that a toast over a border keeps its characters.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from itertools import pairwise

from textual._compositor import ChopsUpdate, Compositor
from textual.geometry import Region
from textual.strip import Strip

EMPTY = Strip([], 0)


def _render_chops(
    self: Compositor, crop: Region, is_rendered_line: Callable[[int], bool]
) -> Sequence[Mapping[int, Strip]]:
    """Textual's Compositor._render_chops, cutting a widget only where another one shows."""
    cuts = self.cuts
    chops: list[dict[int, Strip | None]] = [dict.fromkeys(cut_set[:-1]) for cut_set in cuts]
    for region, clip, strips in self._get_renders(crop):
        render_region = region.intersection(clip)
        render_x = render_region.x
        first_cut, last_cut = render_region.column_span
        for y, strip in zip(render_region.line_range, strips, strict=False):
            if not is_rendered_line(y):
                continue
            line = chops[y]
            final_cuts = [cut for cut in cuts[y] if last_cut >= cut >= first_cut]
            pieces = list(pairwise(final_cuts))
            # Painting front to back: a piece painted already belongs to a widget in front.
            index = 0
            while index < len(pieces):
                if line.get(pieces[index][0], EMPTY) is not None:
                    index += 1
                    continue
                last = index
                while last + 1 < len(pieces) and line.get(pieces[last + 1][0], EMPTY) is None:
                    last += 1
                start, stop = pieces[index][0], pieces[last][1]
                line[start] = strip.crop(start - render_x, stop - render_x)
                for cut, _end in pieces[index + 1 : last + 1]:
                    line[cut] = EMPTY  # the stretch's piece above covers it
                index = last + 1
    return chops  # type: ignore[return-value]


def render_partial_update(self: Compositor) -> ChopsUpdate | None:
    """Textual's render_partial_update, each piece ending where its strip does."""
    screen_region = self.size.region
    update_regions = self._dirty_regions.copy()
    self._dirty_regions.clear()
    if not update_regions:
        return None
    crop = Region.from_union(update_regions).intersection(screen_region)
    spans = list(self._regions_to_spans(update_regions))
    is_rendered_line = {y for y, _, _ in spans}.__contains__
    chops = self._render_chops(crop, is_rendered_line)
    chop_ends = [
        [
            x + strip.cell_length if strip is not None and strip.cell_length else end
            for (x, strip), end in zip(line.items(), cut_set[1:], strict=False)
        ]
        for line, cut_set in zip(chops, self.cuts, strict=True)
    ]
    return ChopsUpdate(chops, spans, chop_ends)


def install() -> None:
    Compositor._render_chops = _render_chops
    Compositor.render_partial_update = render_partial_update


install()
