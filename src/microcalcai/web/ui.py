"""The page: the slice view on the left, the MicrocalcAI panel on the right.

Widgets are bound to the names in `state.py` and call the `PageController`; element ids
(`mc-...`) name the controls for people writing browser tests and for accessibility tools.
"""

from __future__ import annotations

from trame.ui.vuetify3 import VAppLayout
from trame.widgets import client, html
from trame.widgets import vuetify3 as v

PANEL_WIDTH = 430
CSS = """
html { overflow-y: hidden; }
.mc-panel .v-expansion-panel-text__wrapper { padding: 6px 12px 10px; }
.mc-bar { position: relative; height: 14px; background: #333; border-radius: 3px; }
.mc-bar-fill { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 3px; }
.mc-bar-threshold { position: absolute; top: -3px; bottom: -3px; width: 2px; background: #fff; }
.mc-colorbar { height: 14px; border-radius: 2px; border: 1px solid #666;
  background-color: #000; }
.mc-results td, .mc-results th { padding: 2px 6px !important; font-size: 13px; }
"""


def _section(title: str, icon: str, value: str):
    panel = v.VExpansionPanel(value=value)
    with panel:
        with v.VExpansionPanelTitle():
            v.VIcon(icon, size="small", classes="mr-2")
            html.Span(title)
    return panel


def _select(name: str, items: str, label: str, **options):
    """A compact drop-down bound to the state `name`, its choices in the state `items`."""
    return v.VSelect(
        v_model=(name,), items=(items,), label=label, density="compact", hide_details=True, **options
    )


def _number(name: str, label: str, width_px: int, **options):
    """A compact number field bound to the state `name`."""
    return v.VTextField(
        v_model_number=(name,),
        type="number",
        label=label,
        density="compact",
        hide_details=True,
        style=f"max-width: {width_px}px",
        **options,
    )


def _slider(name: str, **options):
    """A compact slider bound to the state `name`."""
    return v.VSlider(v_model=(name,), density="compact", hide_details=True, **options)


def _results_table():
    # Hidden for a whole-image model, which answers in the exam's own table.
    with v.VTable(
        v_if="results.length || !whole_image_models.includes(model)",
        density="compact",
        classes="mc-results",
        id="mc-results",
    ):
        with html.Thead():
            with html.Tr():
                for name in ("Model", "P(malignant)", "", "Threshold", "Decision"):
                    html.Th(name)
        with html.Tbody():
            with html.Tr(
                v_for="row in results",
                key="row.model",
                raw_attrs=[
                    'class="mc-result-row"',
                    ':data-model="row.model"',
                    ':data-probability="row.probability"',
                    ':data-threshold="row.threshold"',
                    ':data-decision="row.decision"',
                    ":style=\"row.ensemble ? 'font-weight: 600' : ''\"",
                ],
            ):
                html.Td(
                    "{{ row.model }}<span class='text-grey text-caption ml-1'>v{{ row.version }}</span>"
                    "<span v-if='row.demonstration' class='mc-demo text-caption text-warning ml-1' "
                    ":title='demonstration_text'>demo</span>"
                )
                html.Td(
                    "{{ row.probability.toFixed(3) }}<span v-if='row.ensemble && certainty && "
                    "certainty.spread !== null' class='mc-spread text-caption text-grey ml-1' "
                    "title='spread of the models: how far they agree'>"
                    "±{{ certainty.spread.toFixed(3) }}</span>",
                    classes="mc-probability",
                )
                _probability_bar("malignant")
                html.Td("{{ row.threshold === null ? 'n/a' : row.threshold.toFixed(3) }}")
                html.Td(
                    "{{ row.decision }}",
                    style=("{ color: row.decision === 'malignant' ? '#ff6f60' : '#81c784' }",),
                )


def _probability_bar(positive: str):
    """A table cell with the row's probability as a bar (red when the decision is `positive`)
    and a tick at its threshold."""
    with html.Td(style="width: 110px"):
        with html.Div(classes="mc-bar"):
            html.Div(
                classes="mc-bar-fill",
                style=(
                    "{ width: (100 * row.probability) + '%', "
                    f"background: row.decision === '{positive}' ? '#e53935' : '#43a047' }}",
                ),
            )
            html.Div(
                v_if="row.threshold !== null",
                classes="mc-bar-threshold",
                style=("{ left: 'calc(' + (100 * row.threshold) + '% - 1px)' }",),
                title="threshold",
            )


def _exam_controls(ctrl):
    """For a whole-image model (BAC): the exam of the view shown, or that view alone."""
    with html.Div(v_if="whole_image_models.includes(model)", classes="d-flex mt-2", id="mc-exam-controls"):
        v.VBtn(
            "Exam (BAC)",
            click=ctrl.exam,
            color="primary",
            classes="flex-grow-1 mr-1",
            disabled=("!connected || !has_image",),
            title="The four views of this view's exam: the exam's verdict, each view's P(BAC) and map",
            id="mc-exam",
        )
        v.VBtn(
            "Classify view",
            click=ctrl.classify_view,
            variant="tonal",
            classes="flex-grow-1 ml-1",
            disabled=("!connected || !has_image",),
            title="P(BAC) of the view shown alone, with its map over the whole view",
            id="mc-classify-view",
        )


def _exam_table(ctrl):
    """The exam's verdict and one row per view (P(BAC), bar, decision); a row shows its view."""
    html.Div(
        "{{ exam.verdict }}",
        v_if="exam",
        classes="text-body-2 font-weight-bold mt-2",
        style=("{ color: exam.positive ? '#ff6f60' : '#81c784' }",),
        id="mc-exam-verdict",
    )
    with v.VTable(v_if="exam_views.length", density="compact", classes="mc-results", id="mc-exam-table"):
        with html.Thead():
            with html.Tr():
                for name in ("View", "P(BAC)", "", "Decision", ""):
                    html.Th(name)
        with html.Tbody():
            with html.Tr(
                v_for="row in exam_views",
                key="row.image_id",
                raw_attrs=[
                    'class="mc-exam-row"',
                    ':data-image="row.image_id"',
                    ':data-view="row.view"',
                    ':data-probability="row.probability"',
                    ':data-decision="row.decision"',
                    ':data-shown="row.image_id === exam_view"',
                    ":style=\"row.image_id === exam_view ? 'font-weight: 600; background: #2a2a2a' : ''\"",
                ],
            ):
                html.Td("{{ row.view }}", title=("row.image_id",))
                html.Td("{{ row.probability.toFixed(3) }}", classes="mc-probability")
                _probability_bar("bac")
                html.Td(
                    "{{ row.decision }}",
                    style=("{ color: row.decision === 'bac' ? '#ff6f60' : '#81c784' }",),
                )
                with html.Td():
                    v.VBtn(
                        "Show",
                        v_if="row.image_id !== exam_view",
                        size="x-small",
                        variant="text",
                        click=(ctrl.show_exam_view, "[row.image_id]"),
                        raw_attrs=[":id=\"'mc-exam-show-' + row.view.replace(' ', '')\""],
                        title="Show this view with its map",
                    )


def build_layout(server, layout_manager, ctrl):
    with VAppLayout(server, theme="dark") as layout:
        client.Style(CSS)
        with v.VAppBar(density="compact", elevation=1):
            v.VAppBarTitle("MicrocalcAI")
            html.Div("{{ image_text }}", classes="text-body-2 text-grey-lighten-1 mr-4", id="mc-image-text")
            v.VProgressCircular(v_if="busy", indeterminate=True, size=18, width=2, classes="mr-2")
            html.Span("{{ busy }}", classes="text-caption mr-4", id="mc-busy")
            v.VChip(
                "{{ annotator }}",
                v_if="annotator",
                prepend_icon="mdi-account",
                size="small",
                classes="mr-2",
                title="stored with every label you save",
                id="mc-annotator",
            )
            v.VChip(
                "{{ connected ? 'connected' : 'not connected' }}",
                color=("connected ? 'green' : 'red'",),
                size="small",
                classes="mr-2",
                id="mc-connection",
            )

        _annotator_dialog(ctrl)
        with v.VNavigationDrawer(location="right", width=PANEL_WIDTH, permanent=True, classes="mc-panel"):
            _panel(ctrl)

        with v.VMain():
            with html.Div(style="position: relative; width: 100%; height: calc(100vh - 48px);", id="mc-view"):
                layout_manager.initialize_layout_grid(layout)
                _view_overlay(ctrl)
    return layout


def _annotator_dialog(ctrl):
    """Asked once per session: the name stored with every label saved from this page."""
    with v.VDialog(v_model=("ask_annotator",), persistent=True, max_width=440):
        with v.VCard(title="Who is annotating?", id="mc-annotator-dialog"):
            with v.VCardText():
                html.Div("Your name is stored with every label you save in this session.", classes="mb-2")
                v.VTextField(
                    v_model=("annotator_input",),
                    label="Your name",
                    density="compact",
                    autofocus=True,
                    keydown_enter=ctrl.set_annotator,
                    id="mc-annotator-input",
                )
                html.Div("{{ error }}", v_if="error", classes="text-error text-caption")
            with v.VCardActions():
                v.VSpacer()
                v.VBtn("Start", click=ctrl.set_annotator, color="primary", id="mc-annotator-ok")


def _view_overlay(ctrl):
    """Zoom buttons and the colour bar drawn over the view's corner."""
    with html.Div(style="position: absolute; top: 8px; left: 8px; z-index: 2; display: flex; gap: 4px;"):
        for icon, tip, click, ident in (
            ("mdi-magnify-plus-outline", "Zoom in", ctrl.zoom_in, "mc-zoom-in"),
            ("mdi-magnify-minus-outline", "Zoom out", ctrl.zoom_out, "mc-zoom-out"),
            ("mdi-fit-to-screen-outline", "Fit the image", ctrl.fit_view, "mc-fit"),
            ("mdi-image-filter-center-focus", "Zoom to the ROI", ctrl.zoom_to_roi, "mc-zoom-roi"),
        ):
            with v.VBtn(icon=True, size="small", variant="tonal", click=click, id=ident, title=tip):
                v.VIcon(icon)
    with html.Div(
        v_if="colorbar && saliency_visible",
        style="position: absolute; bottom: 10px; left: 10px; width: 240px; z-index: 2; "
        "background: rgba(0,0,0,0.6); padding: 6px 8px; border-radius: 4px;",
        id="mc-colorbar",
    ):
        html.Div("Saliency (where the model looked)", classes="text-caption")
        html.Div(classes="mc-colorbar", style=("{ backgroundImage: colorbar }",))
        with html.Div(classes="d-flex justify-space-between text-caption"):
            html.Span("0")
            html.Span("{{ colorbar_floor }} (shown from here)")
            html.Span("1")


def _panel(ctrl):
    with html.Div(classes="pa-2"):
        v.VAlert(
            v_if="error",
            text=("error",),
            type="error",
            density="compact",
            closable=True,
            click_close="error = ''",
            id="mc-error",
            classes="mb-2",
        )
        v.VAlert(v_if="notice", text=("notice",), type="info", density="compact", classes="mb-2")
        with v.VExpansionPanels(
            multiple=True,
            v_model=("open_sections", ["server", "image", "roi", "results", "annotate", "learn"]),
            variant="accordion",
        ):
            with _section("Server", "mdi-server-network", "server"), v.VExpansionPanelText():
                with html.Div(classes="d-flex align-center"):
                    v.VTextField(
                        v_model=("server_url",),
                        label="Server address",
                        density="compact",
                        hide_details=True,
                        id="mc-server-url",
                    )
                    v.VBtn("Connect", click=ctrl.connect, classes="ml-2", id="mc-connect")
                html.Div("{{ server_text }}", classes="text-caption mt-1", id="mc-server-text")
                _select("model", "models", "Model", classes="mt-2", id="mc-model")
                html.Div(
                    "{{ demonstration_text }}",
                    v_if="demonstration_text",
                    classes="text-caption text-warning mt-1",
                    id="mc-demonstration",
                )

            with _section("Image", "mdi-image-outline", "image"), v.VExpansionPanelText():
                v.VFileInput(
                    label="Upload a mammogram (DICOM, PNG or NRRD)",
                    density="compact",
                    hide_details=True,
                    prepend_icon="mdi-upload",
                    change=(ctrl.upload, "[$event.target.files]"),
                    id="mc-upload",
                    # The field is only a trigger: the image shown is the page's state.
                    click_clear="",
                )
                with html.Div(classes="d-flex align-center mt-2"):
                    _select("image_choice", "images", "or pick one from the server", id="mc-image-choice")
                    v.VBtn("Open", click=ctrl.open_datastore_image, classes="ml-2", id="mc-open-image")
                    with v.VBtn(
                        icon=True,
                        size="small",
                        variant="text",
                        click=ctrl.refresh_images,
                        title="Refresh the list",
                    ):
                        v.VIcon("mdi-refresh")
                with html.Div(classes="d-flex align-center mt-2"):
                    _select(
                        "preset",
                        "presets",
                        "Window preset",
                        update_modelValue=(ctrl.apply_preset, "[$event]"),
                        id="mc-preset",
                    )
                _slider(
                    "level",
                    min=("intensity_min",),
                    max=("intensity_max",),
                    label="Brightness",
                    disabled=("!has_image",),
                    id="mc-level",
                )
                html.Div(
                    "On the image: left-drag sets brightness/contrast, right-drag or the wheel zooms, "
                    "middle-drag or Shift+left-drag pans.",
                    classes="text-caption text-grey",
                )
                _slider(
                    "window",
                    min=("Math.max((intensity_max - intensity_min) / 500, 1e-6)",),
                    max=("2 * (intensity_max - intensity_min) || 1",),
                    label="Contrast (window)",
                    disabled=("!has_image",),
                    id="mc-window",
                    reverse=True,
                )

            with _section("ROI", "mdi-selection-drag", "roi"), v.VExpansionPanelText():
                with html.Div(classes="d-flex align-center"):
                    v.VBtn(
                        "Place point",
                        click=ctrl.place_point,
                        prepend_icon="mdi-crosshairs",
                        size="small",
                        id="mc-place-point",
                    )
                    _number("roi_size_mm", "ROI size (mm)", 110, classes="mx-2", id="mc-roi-size")
                    v.VBtn(
                        "Draw box",
                        click=ctrl.draw_box,
                        prepend_icon="mdi-vector-square",
                        size="small",
                        id="mc-draw-box",
                    )
                    with v.VBtn(
                        icon=True, size="small", variant="text", click=ctrl.clear_roi, title="Remove the ROI"
                    ):
                        v.VIcon("mdi-close")
                html.Div(
                    "{{ placing }}", v_if="placing", classes="text-caption text-amber mt-1", id="mc-placing"
                )
                html.Div("{{ roi_text }}", classes="text-caption mt-1", id="mc-roi-text")

            with _section("Classify", "mdi-chart-bar", "results"), v.VExpansionPanelText():
                v.VBtn(
                    "Classify",
                    click=ctrl.classify,
                    color="primary",
                    block=True,
                    disabled=("!connected || !has_image || whole_image_models.includes(model)",),
                    id="mc-classify",
                )
                _exam_controls(ctrl)
                v.VBtn(
                    "Save to PACS",
                    click=ctrl.save_to_pacs,
                    variant="tonal",
                    block=True,
                    classes="mt-2",
                    disabled=("!connected || !has_image || whole_image_models.includes(model)",),
                    title="Classify and store the result as DICOM (SR and saliency) in the image's own study",
                    id="mc-save-pacs",
                )
                html.Div("{{ result_text }}", classes="text-body-2 mt-2", id="mc-result-text")
                html.Div("{{ pacs_text }}", v_if="pacs_text", classes="text-caption mt-1", id="mc-pacs-text")
                _results_table()
                _exam_table(ctrl)
                with html.Div(v_if="certainty", classes="text-caption mt-1", id="mc-certainty"):
                    html.Div(
                        "How sure: {{ certainty.agreement }}",
                        style=("{ color: certainty.split ? '#ffb74d' : '' }",),
                        id="mc-agreement",
                    )
                    html.Div(
                        "Reliability: {{ certainty.reliability }}", classes="text-grey", id="mc-reliability"
                    )
                with html.Div(classes="d-flex align-center mt-1"):
                    v.VSwitch(
                        v_model=("saliency_visible",),
                        label="Saliency overlay",
                        density="compact",
                        hide_details=True,
                        color="orange",
                        id="mc-saliency-visible",
                    )
                    _slider(
                        "saliency_opacity",
                        min=0,
                        max=1,
                        step=0.05,
                        label="Opacity",
                        classes="ml-2",
                        id="mc-saliency-opacity",
                    )
                html.Div(
                    "{{ timing ? 'page ' + timing.page_s.toFixed(2) + ' s' : '' }}",
                    classes="text-caption text-grey",
                    id="mc-timing",
                )

            with _section("Annotate", "mdi-tag-outline", "annotate"), v.VExpansionPanelText():
                with html.Div(classes="d-flex"):
                    _select(
                        "morphology",
                        "morphologies",
                        "BI-RADS morphology (optional)",
                        clearable=True,
                        id="mc-morphology",
                    )
                    _select(
                        "distribution",
                        "distributions",
                        "Distribution (optional)",
                        clearable=True,
                        classes="ml-2",
                        id="mc-distribution",
                    )
                with html.Div(classes="d-flex mt-2"):
                    v.VBtn(
                        "Benign",
                        click=(ctrl.annotate, "['benign']"),
                        color="green-darken-1",
                        classes="flex-grow-1 mr-1",
                        id="mc-benign",
                    )
                    v.VBtn(
                        "Malignant",
                        click=(ctrl.annotate, "['malignant']"),
                        color="red-darken-1",
                        classes="flex-grow-1 ml-1",
                        id="mc-malignant",
                    )
                html.Div("{{ label_text }}", classes="text-caption mt-1", id="mc-label-text")

            with (
                _section("Active learning and training", "mdi-school-outline", "learn"),
                v.VExpansionPanelText(),
            ):
                with html.Div(classes="d-flex align-center"):
                    _select("strategy", "strategies", "Strategy", id="mc-strategy")
                    v.VBtn(
                        "Next sample",
                        click=ctrl.next_sample,
                        classes="ml-2",
                        disabled=("!connected",),
                        id="mc-next",
                    )
                html.Div("{{ sample_text }}", classes="text-caption mt-1", id="mc-sample-text")
                with html.Div(classes="d-flex align-center mt-2"):
                    _select("train_model", "hosted_models", "Model to train", id="mc-train-model")
                    _number("train_epochs", "Epochs", 80, classes="ml-2", id="mc-train-epochs")
                v.VCheckbox(
                    v_model=("train_manifest_labels",),
                    label="Also use the labels of the studies' manifest",
                    density="compact",
                    hide_details=True,
                    id="mc-train-manifest",
                )
                with html.Div(classes="d-flex"):
                    v.VBtn(
                        "Train",
                        click=ctrl.start_training,
                        disabled=("!connected || training",),
                        classes="flex-grow-1 mr-1",
                        id="mc-train",
                    )
                    v.VBtn(
                        "Stop",
                        click=ctrl.stop_training,
                        disabled=("!training",),
                        classes="flex-grow-1 ml-1",
                        id="mc-stop",
                    )
                v.VProgressLinear(
                    model_value=("train_progress",),
                    height=8,
                    classes="mt-2",
                    color="orange",
                    id="mc-train-progress",
                )
                html.Div("{{ train_text }}", classes="text-caption mt-1", id="mc-train-text")
