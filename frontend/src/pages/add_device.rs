//! The add-device wizard: the device's details, then its credential (shown once) and the commands that
//! connect it. `ConnectGuide` is also the device page's "how to connect" section.

use super::auth::setter;
use crate::api::{
    self, ApiError, CreateDevice, TunnelServerInfo, create_device, tunnel_server_info,
};
use crate::route::Route;
use crate::ui::{Code, CopyButton, ErrorBox, Field};
use p2pvps_shared::connect::DeviceTunnel;
use p2pvps_shared::{DeviceName, Money, SubdomainLabel};
use std::collections::BTreeMap;
use yew::prelude::*;
use yew_router::prelude::*;

/// Our SSH server, as the connect commands need it.
#[derive(Clone, Debug, PartialEq)]
pub struct Server {
    pub host: String,
    pub port: u16,
    pub fingerprint: String,
    pub known_hosts_line: String,
}

macro_rules! server_from {
    ($s:expr) => {{
        let s = $s;
        $crate::pages::add_device::Server {
            host: s.host.clone(),
            port: u16::try_from(s.port).unwrap_or(22),
            fingerprint: s.host_key_fingerprint.clone(),
            known_hosts_line: s.known_hosts_line.clone(),
        }
    }};
}
pub(crate) use server_from;

#[derive(Properties, PartialEq)]
pub struct GuideProps {
    pub device_id: AttrValue,
    pub device_port: u16,
    pub server: Option<Server>,
}

/// The ways to connect a device: a plain `ssh -R`, or a key and an autossh systemd unit that keep it up.
#[function_component(ConnectGuide)]
pub fn connect_guide(props: &GuideProps) -> Html {
    let Some(server) = &props.server else {
        return html! { <p class="notice">{ "This server runs no SSH tunnel server (started without --ssh), so devices cannot connect to it yet." }</p> };
    };
    let tunnel = DeviceTunnel {
        host: &server.host,
        ssh_port: server.port,
        device_id: &props.device_id,
        device_port: props.device_port,
        local_port: 22,
    };
    html! {
        <div class="guide">
            <h3>{ "Try it now" }</h3>
            <p>{ "On the device, run this and type the device credential as the password. The device's own SSH server (port 22) becomes reachable through ours while it runs." }</p>
            <Code id="ssh-command" text={tunnel.ssh_command()} />
            <p>{ "The first time, ssh shows our host key's fingerprint; it must be " }<code id="fingerprint">{ &server.fingerprint }</code>{ "." }</p>
            <h3>{ "Keep it connected" }</h3>
            <p>{ "For a device that stays online unattended, give it its own key (no password on disk) and let autossh keep the tunnel up:" }</p>
            <ol>
                <li>{ "Create the key and pin our host key (prints the public key):" }
                    <Code id="key-setup" text={tunnel.key_setup(&server.known_hosts_line)} /></li>
                <li>{ "Add the printed public key under SSH keys on the device's page." }</li>
                <li>{ "Install autossh (" }<code>{ "sudo apt install autossh" }</code>{ ") and save this as " }
                    <code>{ "/etc/systemd/system/p2pvps-tunnel.service" }</code>{ ", then run " }
                    <code>{ "sudo systemctl enable --now p2pvps-tunnel" }</code>{ ":" }
                    <Code id="systemd-unit" text={tunnel.systemd_unit()} /></li>
            </ol>
            <p class="hint">{ "The p2pvps agent, which also reports the device's hardware and prepares renters' accounts, will replace these steps." }</p>
        </div>
    }
}

type Errors = BTreeMap<&'static str, String>;

#[derive(Clone, PartialEq)]
struct Created {
    id: String,
    name: String,
    port: u16,
    subdomain: String,
    credential: String,
}

fn number(field: &'static str, text: &str, errors: &mut Errors) -> Option<i64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    match text.parse::<i64>() {
        Ok(n) if n > 0 => Some(n),
        _ => {
            errors.insert(field, "Must be a whole number above zero".to_owned());
            None
        }
    }
}

#[function_component(AddDevicePage)]
pub fn add_device_page() -> Html {
    let name = use_state(String::new);
    let subdomain = use_state(String::new);
    let cpu_model = use_state(String::new);
    let cpu_cores = use_state(String::new);
    let memory = use_state(String::new);
    let disk = use_state(String::new);
    let arch = use_state(String::new);
    let price = use_state(String::new);
    let currency = use_state(|| "USD".to_owned());
    let hours = use_state(|| "24".to_owned());
    let local = use_state(Errors::new);
    let remote = use_state(|| None::<ApiError>);
    let created = use_state(|| None::<Created>);
    let server = use_state(|| None::<Server>);
    let busy = use_state(|| false);
    {
        let server = server.clone();
        use_effect_with((), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                if let Ok(d) = api::run::<TunnelServerInfo>(tunnel_server_info::Variables {}).await
                {
                    server.set(d.tunnel_server.as_ref().map(|s| server_from!(s)));
                }
            });
        });
    }
    if let Some(c) = &*created {
        return html! {
            <section>
                <h1>{ format!("{} is registered", c.name) }</h1>
                <div class="secret" role="status">
                    <h2>{ "Device credential" }</h2>
                    <p><strong>{ "Shown only now." }</strong>{ " Store it where you keep passwords; if it is lost, rotate it on the device's page." }</p>
                    <pre id="credential">{ &c.credential }</pre>
                    <CopyButton text={c.credential.clone()} label="Copy credential" />
                </div>
                <dl class="facts">
                    <dt>{ "Device id (its SSH user name)" }</dt><dd><code id="device-id">{ &c.id }</code></dd>
                    <dt>{ "Public port" }</dt><dd id="device-port">{ c.port }</dd>
                    <dt>{ "Subdomain" }</dt><dd><code>{ &c.subdomain }</code></dd>
                </dl>
                <h2>{ "Connect it" }</h2>
                <ConnectGuide device_id={c.id.clone()} device_port={c.port} server={(*server).clone()} />
                <p><Link<Route> to={Route::Device { id: c.id.clone() }} classes="button">{ "Go to the device" }</Link<Route>>
                   { " " }<Link<Route> to={Route::Devices}>{ "Back to my devices" }</Link<Route>></p>
            </section>
        };
    }
    let onsubmit = {
        let states = (
            name.clone(),
            subdomain.clone(),
            cpu_model.clone(),
            cpu_cores.clone(),
            memory.clone(),
            disk.clone(),
            arch.clone(),
            price.clone(),
            currency.clone(),
            hours.clone(),
        );
        let (local, remote, created, busy) =
            (local.clone(), remote.clone(), created.clone(), busy.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let (name, subdomain, cpu_model, cpu_cores, memory, disk, arch, price, currency, hours) =
                &states;
            let mut errors = Errors::new();
            if let Err(e) = DeviceName::parse(name) {
                errors.insert("name", api::capitalise(&e.message));
            }
            if !subdomain.trim().is_empty()
                && let Err(e) = SubdomainLabel::parse(subdomain)
            {
                errors.insert("subdomain", api::capitalise(&e.message));
            }
            let money = if price.trim().is_empty() {
                None
            } else {
                match Money::parse_price(price, currency) {
                    Ok(m) => Some(m),
                    Err(e) => {
                        errors.insert(e.field, api::capitalise(&e.message));
                        None
                    }
                }
            };
            let cores = number("cpuCores", cpu_cores, &mut errors);
            let memory_mb = number("memoryMb", memory, &mut errors);
            let disk_gb = number("diskGb", disk, &mut errors);
            let rental_hours = number("rentalHours", hours, &mut errors);
            local.set(errors.clone());
            if !errors.is_empty() {
                return;
            }
            let text =
                |s: &UseStateHandle<String>| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
            let input = create_device::CreateDeviceInput {
                name: name.trim().to_owned(),
                subdomain: text(subdomain),
                description: None,
                hardware: Some(create_device::HardwareInput {
                    cpu_model: text(cpu_model),
                    cpu_cores: cores,
                    memory_mb,
                    disk_gb,
                    arch: text(arch),
                    internet_mbps: None,
                }),
                for_rent: money.is_some(),
                price: money.map(|m| create_device::MoneyInput {
                    minor: m.minor,
                    currency: m.currency.as_str().to_owned(),
                }),
                rental_hours,
            };
            let (remote, created, busy) = (remote.clone(), created.clone(), busy.clone());
            busy.set(true);
            wasm_bindgen_futures::spawn_local(async move {
                match api::run::<CreateDevice>(create_device::Variables { input }).await {
                    Ok(d) => {
                        let device = d.create_device.device;
                        created.set(Some(Created {
                            id: device.id,
                            name: device.name,
                            port: u16::try_from(device.tunnel_port).unwrap_or_default(),
                            subdomain: device.subdomain,
                            credential: d.create_device.credential,
                        }));
                    }
                    Err(e) => remote.set(Some(e)),
                }
                busy.set(false);
            });
        })
    };
    let error = |field: &'static str| {
        local
            .get(field)
            .cloned()
            .or_else(|| remote.as_ref().and_then(|e| e.field(field)))
    };
    let known = [
        "name",
        "subdomain",
        "cpuCores",
        "memoryMb",
        "diskGb",
        "price",
        "currency",
        "rentalHours",
    ];
    let general = remote
        .as_ref()
        .filter(|e| known.iter().all(|f| e.field(f).is_none()))
        .cloned();
    let on_currency = {
        let currency = currency.clone();
        Callback::from(move |e: Event| {
            if let Some(select) = e.target_dyn_into::<web_sys::HtmlSelectElement>() {
                currency.set(select.value());
            }
        })
    };
    html! {
        <section class="narrow">
            <h1>{ "Add a device" }</h1>
            <p>{ "Any small Linux computer with an SSH server works: a Raspberry Pi, a spare VM. You get a credential and the command that connects it." }</p>
            if let Some(e) = general { <ErrorBox error={e} /> }
            <form {onsubmit} novalidate=true>
                <Field id="name" label="Name" value={(*name).clone()} oninput={setter(&name)} error={error("name")}
                    hint="For you and renters, e.g. Kitchen Pi." required=true />
                <Field id="subdomain" label="Subdomain (optional)" value={(*subdomain).clone()} oninput={setter(&subdomain)}
                    error={error("subdomain")} hint="Letters, digits and dashes; generated when left empty." />
                <fieldset>
                    <legend>{ "Hardware (shown to renters)" }</legend>
                    <Field id="cpu-model" label="CPU model" value={(*cpu_model).clone()} oninput={setter(&cpu_model)} />
                    <Field id="cpu-cores" label="CPU cores" kind="number" value={(*cpu_cores).clone()}
                        oninput={setter(&cpu_cores)} error={error("cpuCores")} />
                    <Field id="memory" label="Memory (MB)" kind="number" value={(*memory).clone()}
                        oninput={setter(&memory)} error={error("memoryMb")} />
                    <Field id="disk" label="Disk (GB)" kind="number" value={(*disk).clone()}
                        oninput={setter(&disk)} error={error("diskGb")} />
                    <Field id="arch" label="Architecture" value={(*arch).clone()} oninput={setter(&arch)}
                        hint="e.g. aarch64" />
                </fieldset>
                <fieldset>
                    <legend>{ "Renting it out (optional)" }</legend>
                    <Field id="price" label="Price per rental period" value={(*price).clone()} oninput={setter(&price)}
                        error={error("price").or_else(|| error("currency"))} hint="Leave empty to keep it off the market for now." />
                    <div class="field">
                        <label for="currency">{ "Currency" }</label>
                        <select id="currency" onchange={on_currency}>
                            { for ["USD", "EUR", "BTC", "BCH"].iter().map(|c| html! {
                                <option value={*c} selected={*currency == *c}>{ *c }</option>
                            }) }
                        </select>
                    </div>
                    <Field id="rental-hours" label="Rental period (hours)" kind="number" value={(*hours).clone()}
                        oninput={setter(&hours)} error={error("rentalHours")} />
                </fieldset>
                <button type="submit" id="create-device" disabled={*busy}>{ "Register device" }</button>
            </form>
        </section>
    }
}
