package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"os"
)

// Chart geometry, in pixels.
const (
	chartScale     = 2   // font pixel size
	chartLabelW    = 230 // scenario label column
	chartPanelW    = 520 // one panel's bar area
	chartPanelGap  = 190 // room for value labels right of the bars
	chartBarH      = 14
	chartGroupGap  = 16
	chartTop       = 70
	chartMaxRatio  = 4.0 // bars longer than this are clipped (value still printed)
	chartLegendGap = 24
)

var (
	chartBG     = color.RGBA{255, 255, 255, 255}
	chartInk    = color.RGBA{30, 30, 30, 255}
	chartGrid   = color.RGBA{215, 215, 215, 255}
	chartRefInk = color.RGBA{200, 40, 40, 255}
	toolColors  = map[string]color.RGBA{
		"kiln-rootless": {46, 125, 50, 255},
		"kiln-root":     {129, 199, 132, 255},
		"kiln-embedded": {251, 140, 0, 255},
		"kaniko":        {96, 125, 139, 255},
		"docker":        {30, 136, 229, 255},
	}
)

// writeChart draws, per scenario, each tool's median wall time (left) and
// peak memory (right) relative to Kaniko, with the absolute values printed.
func writeChart(path string, r *Report) error {
	type bar struct {
		tool        string
		wall        float64 // ratio to Kaniko, 0 when unknown
		wallS, memS string  // absolute medians
	}
	type group struct {
		scenario string
		bars     []bar
	}
	var groups []group
	for _, sc := range scenarioOrder(r) {
		base := statsOf(find(r, sc, "kaniko").samplesOrNil())
		g := group{scenario: sc}
		for _, res := range r.Results {
			if res.Scenario != sc || len(res.Samples) == 0 {
				continue
			}
			st := statsOf(res.Samples)
			b := bar{tool: res.Tool, wallS: fmt.Sprintf("%.2fs", st.Wall.Seconds()), memS: "n/a"}
			if base.N > 0 {
				b.wall = st.Wall.Seconds() / base.Wall.Seconds()
			}
			if st.MemKnown {
				b.memS = mibText(st.PeakMem)
			}
			g.bars = append(g.bars, b)
		}
		groups = append(groups, g)
	}
	height := chartTop + chartLegendGap*2
	for _, g := range groups {
		height += len(g.bars)*chartBarH + chartGroupGap
	}
	width := chartLabelW + 2*(chartPanelW+chartPanelGap)
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	fillRect(img, 0, 0, width, height, chartBG)
	drawText(img, 10, 10, chartScale, "kiln vs Kaniko v1.23.2: median of each tool / Kaniko (1.0 = red line, shorter is better)", chartInk)

	panels := []struct {
		title string
		x     int
	}{
		{"wall time", chartLabelW},
		{"peak memory (cgroup)", chartLabelW + chartPanelW + chartPanelGap},
	}
	for _, p := range panels {
		drawText(img, p.x, 40, chartScale, p.title, chartInk)
		for i := 0; i <= int(chartMaxRatio); i++ {
			x := p.x + int(float64(i)/chartMaxRatio*chartPanelW)
			col := chartGrid
			if i == 1 {
				col = chartRefInk
			}
			fillRect(img, x, chartTop-6, 1, height-chartTop-chartLegendGap*2+6, col)
			drawText(img, x-4, height-chartLegendGap*2+2, 1, fmt.Sprintf("%dx", i), chartInk)
		}
	}
	y := chartTop
	for _, g := range groups {
		drawText(img, 10, y+(len(g.bars)*chartBarH)/2-7, chartScale, g.scenario, chartInk)
		for _, b := range g.bars {
			col := toolColors[b.tool]
			drawBar(img, panels[0].x, y, b.wall, col, b.wallS)
			drawBar(img, panels[1].x, y, memRatio(r, g.scenario, b.tool), col, b.memS)
			y += chartBarH
		}
		y += chartGroupGap
	}
	// Legend.
	x := 10
	for _, t := range r.Tools {
		col, ok := toolColors[t.Name]
		if !ok {
			continue
		}
		fillRect(img, x, height-chartLegendGap+4, 14, 14, col)
		drawText(img, x+20, height-chartLegendGap+4, chartScale, t.Name, chartInk)
		x += 20 + textWidth(t.Name, chartScale) + 30
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// drawBar draws one bar of length ratio (clipped at chartMaxRatio) with the
// label after it; a zero ratio draws only the label.
func drawBar(img *image.RGBA, x, y int, ratio float64, col color.RGBA, label string) {
	w := int(min(ratio, chartMaxRatio) / chartMaxRatio * chartPanelW)
	fillRect(img, x, y+1, w, chartBarH-2, col)
	text := label
	if ratio > 0 {
		text = fmt.Sprintf("%s  %.2fx", label, ratio)
	}
	drawText(img, x+w+6, y+1, 1, text, chartInk)
}

func memRatio(r *Report, scenario, tool string) float64 {
	base, st := statsOf(find(r, scenario, "kaniko").samplesOrNil()), statsOf(find(r, scenario, tool).samplesOrNil())
	if !st.MemKnown || base.PeakMem == 0 || st.N == 0 {
		return 0
	}
	return float64(st.PeakMem) / float64(base.PeakMem)
}
