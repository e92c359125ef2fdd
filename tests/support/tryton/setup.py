"""Sets up a fresh Tryton database for Tollgate's integration test.

Usage: python setup.py <trytond.conf> <year> [<year> ...]

Creates what a finance team would have configured in Tryton before posting
usage invoices: a company (EUR), the standard English chart of accounts,
one fiscal year per given year with monthly periods and invoice sequences,
two customers (each with an invoice address), a service product billed per unit and
a 30-day payment term. Prints the record ids the gateway's configuration
and master data need, as one JSON object.
"""
import datetime
from decimal import Decimal
import json
import sys

from proteus import Model, config as pconfig

from trytond.modules.account.tests.tools import (
    create_chart, create_fiscalyear, get_accounts)
from trytond.modules.account_invoice.tests.tools import (
    set_fiscalyear_invoice_sequences)
from trytond.modules.company.tests.tools import create_company, get_company


def main():
    conf, years = sys.argv[1], [int(y) for y in sys.argv[2:]]
    config = pconfig.set_trytond('erp', config_file=conf)

    create_company()
    company = get_company()
    create_chart(company)
    accounts = get_accounts(company)
    for year in years:
        fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear(
                company,
                (datetime.date(year, 1, 1), datetime.date(year, 12, 31))))
        fiscalyear.click('create_period')

    Party = Model.get('party.party')
    customers = {}
    for name in ['Globex Corporation', 'Initech']:
        customer = Party(name=name)
        customer.save()
        customers[name.split()[0].lower()] = customer.id

    Uom = Model.get('product.uom')
    unit, = Uom.find([('name', '=', 'Unit')])
    ProductCategory = Model.get('product.category')
    category = ProductCategory(name='Usage')
    category.accounting = True
    category.account_revenue = accounts['revenue']
    category.account_expense = accounts['expense']
    category.save()
    ProductTemplate = Model.get('product.template')
    template = ProductTemplate(
        name='API calls', type='service', default_uom=unit,
        list_price=Decimal(0), account_category=category)
    template.save()
    product = template.products[0]

    PaymentTerm = Model.get('account.invoice.payment_term')
    term = PaymentTerm(name='30 days')
    line = term.lines.new(type='remainder')
    line.relativedeltas.new(days=30)
    term.save()

    json.dump({
        'company': company.id,
        'customers': customers,
        'journal': Model.get('account.journal').find(
            [('type', '=', 'revenue')], limit=1)[0].id,
        'receivable': accounts['receivable'].id,
        'revenue': accounts['revenue'].id,
        'unit': unit.id,
        'product': product.id,
        'payment_term': term.id,
        'user': config.user,
    }, sys.stdout)


if __name__ == '__main__':
    main()
